"""Versioned schema migrations, applied in order at start (PRAGMA user_version is the version)."""

from __future__ import annotations

# Append only: never edit a migration that has shipped; add a new one.
MIGRATIONS: list[str] = [
    # 1: the hotline: cases, their versions, actions, evidence, routing, outboxes, tokens, audit.
    """
    CREATE TABLE reports (
        id TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        local_ref TEXT NOT NULL,
        seq INTEGER NOT NULL,
        url TEXT NOT NULL,
        url_key TEXT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        verdict TEXT,
        category TEXT,
        legal_basis TEXT,
        tlp TEXT NOT NULL,
        description TEXT,
        contact TEXT,
        notes TEXT,
        duplicates INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL,
        assessed_at TEXT,
        updated_at TEXT NOT NULL,
        trace_status TEXT NOT NULL DEFAULT 'pending',
        trace_json TEXT,
        traced_at TEXT
    );
    CREATE INDEX reports_url_key ON reports(url_key, status);
    CREATE INDEX reports_status ON reports(status, received_at);
    CREATE INDEX reports_received ON reports(received_at);
    CREATE INDEX reports_trace_pending ON reports(trace_status) WHERE trace_status = 'pending';
    CREATE UNIQUE INDEX reports_origin_ref ON reports(origin, local_ref);

    CREATE TABLE report_versions (
        report_id TEXT NOT NULL REFERENCES reports(id),
        seq INTEGER NOT NULL,
        payload BLOB NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (report_id, seq)
    );

    CREATE TABLE actions (
        id TEXT PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES reports(id),
        code TEXT NOT NULL,
        at TEXT NOT NULL,
        by_node TEXT NOT NULL,
        analyst TEXT,
        country TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX actions_report ON actions(report_id, at);
    CREATE INDEX actions_code ON actions(code, at);

    CREATE TABLE hosting_addresses (
        report_id TEXT NOT NULL REFERENCES reports(id),
        ip TEXT NOT NULL,
        country TEXT,
        basis TEXT,
        source TEXT,
        asn INTEGER,
        cdn INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (report_id, ip)
    );
    CREATE INDEX hosting_country ON hosting_addresses(country);

    CREATE TABLE routing_decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        report_id TEXT NOT NULL REFERENCES reports(id),
        decision TEXT NOT NULL,
        targets TEXT NOT NULL,
        reasons TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        decided_by TEXT NOT NULL
    );
    CREATE INDEX routing_report ON routing_decisions(report_id, id);

    CREATE TABLE peers (
        node_id TEXT PRIMARY KEY,
        country TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,
        mode TEXT NOT NULL,
        categories TEXT NOT NULL,
        max_tlp TEXT NOT NULL,
        key_document BLOB,
        added_at TEXT NOT NULL,
        last_contact_at TEXT,
        backoff_until TEXT,
        backoff_attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX peers_country ON peers(country, status);

    CREATE TABLE peer_outbox (
        peer_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        record_type TEXT NOT NULL,
        record_id TEXT NOT NULL,
        report_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        last_error TEXT,
        PRIMARY KEY (peer_id, seq)
    );
    CREATE INDEX peer_outbox_pending ON peer_outbox(peer_id, state, seq);
    CREATE INDEX peer_outbox_report ON peer_outbox(report_id);

    CREATE TABLE channel_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        report_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        created_at TEXT NOT NULL,
        delivered_at TEXT,
        last_error TEXT
    );
    CREATE INDEX channel_outbox_pending ON channel_outbox(channel, state, id);
    CREATE INDEX channel_outbox_report ON channel_outbox(report_id);

    CREATE TABLE inbox_seen (
        sender TEXT NOT NULL,
        msg_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (sender, msg_id)
    );
    CREATE INDEX inbox_seen_created ON inbox_seen(created_at);

    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );

    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        event TEXT NOT NULL,
        subject TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_subject ON audit_log(subject, seq);
    """,
    # 2: federation: evidence of what peers sent, idempotent transactions, dead letters,
    # receipts, pull cursors, sticky revocations, request nonces.
    """
    CREATE TABLE inbox_envelopes (
        digest TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        msg_id TEXT NOT NULL,
        record_type TEXT NOT NULL,
        record_id TEXT NOT NULL,
        report_id TEXT NOT NULL,
        received_at TEXT NOT NULL,
        frame BLOB NOT NULL
    );
    CREATE INDEX inbox_envelopes_received ON inbox_envelopes(received_at);
    CREATE INDEX inbox_envelopes_report ON inbox_envelopes(report_id);

    CREATE TABLE inbound_transactions (
        sender TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        response BLOB NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (sender, txn_id)
    );
    CREATE INDEX inbound_transactions_received ON inbound_transactions(received_at);

    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        peer_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        seq INTEGER,
        record_type TEXT,
        record_id TEXT,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX dead_letters_peer ON dead_letters(peer_id, at);

    CREATE TABLE receipts (
        peer_id TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        frame BLOB NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (peer_id, txn_id)
    );

    CREATE TABLE pull_cursors (
        peer_id TEXT PRIMARY KEY,
        after_seq INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );

    CREATE TABLE request_nonces (
        sender TEXT NOT NULL,
        nonce TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (sender, nonce)
    );
    CREATE INDEX request_nonces_created ON request_nonces(created_at);

    ALTER TABLE peers ADD COLUMN revoked_keys TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE peers ADD COLUMN keys_refreshed_at TEXT;
    ALTER TABLE peers ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE peers ADD COLUMN received INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX peer_outbox_state ON peer_outbox(state, peer_id);
    """,
    # 3: national channels: police clearance of the law-enforcement-first hold, due rows.
    """
    ALTER TABLE reports ADD COLUMN lea_cleared_at TEXT;
    CREATE INDEX channel_outbox_due ON channel_outbox(state, next_attempt_at);
    """,
    # 4: which configured channel carried each delivery (roles map to channels by policy).
    """
    ALTER TABLE channel_outbox ADD COLUMN sent_via TEXT;
    CREATE INDEX channel_outbox_sent_via ON channel_outbox(sent_via, state);
    """,
    # 5: evidence frames keyed by arrival (rowid) instead of their digest. A digest is random,
    # so each new frame dirtied a random page of an index as large as the store, and nothing
    # looks frames up by digest. Every frame is kept (a replay is refused before it is stored).
    """
    CREATE TABLE inbox_envelopes_by_arrival (
        id INTEGER PRIMARY KEY,
        digest TEXT NOT NULL,
        sender TEXT NOT NULL,
        msg_id TEXT NOT NULL,
        record_type TEXT NOT NULL,
        record_id TEXT NOT NULL,
        report_id TEXT NOT NULL,
        received_at TEXT NOT NULL,
        frame BLOB NOT NULL
    );
    INSERT INTO inbox_envelopes_by_arrival
        (digest, sender, msg_id, record_type, record_id, report_id, received_at, frame)
        SELECT digest, sender, msg_id, record_type, record_id, report_id, received_at, frame
        FROM inbox_envelopes ORDER BY received_at, rowid;
    DROP TABLE inbox_envelopes;
    ALTER TABLE inbox_envelopes_by_arrival RENAME TO inbox_envelopes;
    CREATE INDEX inbox_envelopes_received ON inbox_envelopes(received_at);
    CREATE INDEX inbox_envelopes_report ON inbox_envelopes(report_id);
    """,
    # 6: a peer that refuses our pushes outright (e.g. it has not added us yet): the reason,
    # while it lasts. Its records are held, not retried on the growing backoff.
    """
    ALTER TABLE peers ADD COLUMN refused TEXT;
    """,
    # 7: an import run again after an interruption takes up where it stopped; a grouped host
    # notice has a reference of its own; the public 8-character reference is looked up by index.
    """
    CREATE TABLE import_runs (
        digest TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        items INTEGER NOT NULL,
        done INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT
    );
    ALTER TABLE channel_outbox ADD COLUMN notice_ref TEXT;
    CREATE INDEX channel_outbox_notice_ref ON channel_outbox(notice_ref);
    CREATE INDEX reports_short_ref ON reports(substr(id, -8));
    CREATE INDEX reports_local_ref ON reports(local_ref);
    """,
    # 8 (console): named people, their server-side sessions, four-eyes reviews, and a full-text
    # index over what analysts search by (URL, host, references, notes).
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        totp_secret TEXT,
        language TEXT,
        created_at TEXT NOT NULL,
        disabled_at TEXT,
        password_set_at TEXT NOT NULL
    );
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name),
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(user_name);
    CREATE INDEX sessions_expires ON sessions(expires_at);
    CREATE TABLE reviews (
        report_id TEXT PRIMARY KEY REFERENCES reports(id),
        verdict TEXT NOT NULL,
        category TEXT NOT NULL,
        legal_basis TEXT,
        analyst TEXT NOT NULL,
        requested_at TEXT NOT NULL
    );
    CREATE INDEX reports_queue ON reports(status, received_at, id);
    CREATE INDEX reports_category ON reports(category, received_at, id);
    CREATE INDEX reports_received_id ON reports(received_at, id);
    CREATE VIRTUAL TABLE reports_fts USING fts5(
        url, host, refs, notes, tokenize = "unicode61 tokenchars '-_'"
    );
    INSERT INTO reports_fts (rowid, url, host, refs, notes)
        SELECT rowid, url,
            substr(substr(url, instr(url, '://') + 3),
            1, instr(substr(url, instr(url, '://') + 3) || '/', '/') - 1),
            substr(id, -8) || ' ' || local_ref || ' ' || id, COALESCE(notes, '')
        FROM reports;
    CREATE TRIGGER reports_fts_insert AFTER INSERT ON reports BEGIN
        INSERT INTO reports_fts (rowid, url, host, refs, notes) VALUES (new.rowid, new.url,
            substr(substr(new.url, instr(new.url, '://') + 3),
            1, instr(substr(new.url, instr(new.url, '://') + 3) || '/', '/') - 1),
            substr(new.id, -8) || ' ' || new.local_ref || ' ' || new.id, COALESCE(new.notes, ''));
    END;
    -- Reports are never deleted or vacuumed, so their rowids are stable keys for the index.
    CREATE TRIGGER reports_fts_update AFTER UPDATE OF url, notes, local_ref ON reports BEGIN
        UPDATE reports_fts SET url = new.url,
            host = substr(substr(new.url, instr(new.url, '://') + 3),
            1, instr(substr(new.url, instr(new.url, '://') + 3) || '/', '/') - 1),
            refs = substr(new.id, -8) || ' ' || new.local_ref || ' ' || new.id,
            notes = COALESCE(new.notes, '') WHERE rowid = new.rowid;
    END;
    CREATE TRIGGER reports_fts_delete AFTER DELETE ON reports BEGIN
        DELETE FROM reports_fts WHERE rowid = old.rowid;
    END;
    """,
    # 9: the console's indexes (8) begin with the same columns as two older ones, which every
    # insert and status change still had to keep up: the older ones go, the planner uses the
    # longer ones for the same queries.
    """
    DROP INDEX reports_status;
    DROP INDEX reports_received;
    """,
    # 10: channel_outbox.channel held a routing role (the channel is chosen when a row is sent,
    # and recorded in sent_via): it is named for what it holds. SQLite renames the column in
    # the indexes too (channel_outbox_pending); no trigger or view reads the table.
    """
    ALTER TABLE channel_outbox RENAME COLUMN channel TO role;
    """,
    # 11: a routing that sent a case to the fallback because the peer of its hosting country
    # is suspended names those countries, so the case shows in the triage queue and is routed
    # again when the peer is resumed (a partial index: such routings are few).
    """
    ALTER TABLE routing_decisions ADD COLUMN suspended_in TEXT;
    CREATE INDEX routing_suspended ON routing_decisions(suspended_in)
        WHERE suspended_in IS NOT NULL;
    UPDATE routing_decisions SET suspended_in = (
        SELECT group_concat(json_extract(t.value, '$.country'), ',')
        FROM json_each(routing_decisions.targets) t
        WHERE json_extract(t.value, '$.rerouted') = 'peer_suspended'
    ) WHERE targets LIKE '%peer_suspended%';
    """,
    # 12: every public submission of a case's URL is kept (node.store.submissions), not only a
    # duplicate count. The words already on cases become their first submission, and leave the
    # reports row: personal data is kept in one place, so one purge erases it.
    """
    CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES reports(id),
        at TEXT NOT NULL,
        description TEXT,
        contact TEXT,
        language TEXT,
        source TEXT NOT NULL
    );
    CREATE INDEX submissions_report ON submissions(report_id, at, id);
    CREATE INDEX submissions_personal ON submissions(at)
        WHERE description IS NOT NULL OR contact IS NOT NULL;
    INSERT INTO submissions (report_id, at, description, contact, language, source)
        SELECT id, received_at, description, contact, NULL, source FROM reports
        WHERE description IS NOT NULL OR contact IS NOT NULL
        ORDER BY received_at, rowid;
    UPDATE reports SET description = NULL, contact = NULL
        WHERE description IS NOT NULL OR contact IS NOT NULL;
    """,
    # 13: four-eyes by person. A review has an id (a confirmation names the verdict it saw), a
    # state (pending, rejected with its reviewer and reason, confirmed) and the analyst as a
    # person's name, compared case-insensitively; a token may belong to a person; a new or
    # reset account's password only sets a new one. Tokens of old carry no person (token
    # names were never people); old reviews name a person only when the analyst was one;
    # every account so far still had the password it was given (no page changed one), so
    # each person sets their own at their next sign-in.
    """
    ALTER TABLE reviews ADD COLUMN id TEXT;
    ALTER TABLE reviews ADD COLUMN state TEXT NOT NULL DEFAULT 'pending';
    ALTER TABLE reviews ADD COLUMN analyst_person TEXT;
    ALTER TABLE reviews ADD COLUMN reviewer TEXT;
    ALTER TABLE reviews ADD COLUMN reason TEXT;
    ALTER TABLE reviews ADD COLUMN decided_at TEXT;
    UPDATE reviews SET id = lower(hex(randomblob(8))),
        analyst_person = CASE WHEN instr(analyst, ':') = 0 THEN lower(analyst) END;
    CREATE UNIQUE INDEX reviews_id ON reviews(id);
    CREATE INDEX reviews_rejected ON reviews(analyst_person, state);
    ALTER TABLE tokens ADD COLUMN person TEXT;
    ALTER TABLE users ADD COLUMN password_temporary INTEGER NOT NULL DEFAULT 0;
    UPDATE users SET password_temporary = 1;
    """,
    # 14: known content. Hashes on cases (from the analyst's tools, the reporter, an import or
    # a peer's report), hash lists (ours, and those peers share with us, named after them), and
    # the matches between the two. Digests are raw bytes: exact types are looked up by value,
    # PDQ is matched in memory by Hamming distance (node.hashes.index) and its matches kept here.
    """
    CREATE TABLE report_hashes (
        report_id TEXT NOT NULL REFERENCES reports(id),
        alg TEXT NOT NULL,
        value BLOB NOT NULL,
        quality INTEGER,
        source TEXT NOT NULL,
        added_at TEXT NOT NULL,
        PRIMARY KEY (report_id, alg, value)
    ) WITHOUT ROWID;
    CREATE INDEX report_hashes_value ON report_hashes(alg, value);

    CREATE TABLE hash_lists (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        origin_name TEXT NOT NULL,
        shared INTEGER NOT NULL DEFAULT 0,
        seq INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX hash_lists_origin ON hash_lists(owner, origin_name);

    CREATE TABLE hash_entries (
        id INTEGER PRIMARY KEY,
        list_id INTEGER NOT NULL REFERENCES hash_lists(id),
        alg TEXT NOT NULL,
        value BLOB NOT NULL,
        quality INTEGER,
        category TEXT NOT NULL,
        grade TEXT,
        use TEXT NOT NULL DEFAULT 'hotlines',
        note TEXT,
        source TEXT,
        added_at TEXT NOT NULL,
        removed_at TEXT
    );
    CREATE UNIQUE INDEX hash_entries_key ON hash_entries(list_id, alg, value);
    CREATE INDEX hash_entries_value ON hash_entries(alg, value) WHERE removed_at IS NULL;

    CREATE TABLE hash_matches (
        report_id TEXT NOT NULL REFERENCES reports(id),
        entry_id INTEGER NOT NULL REFERENCES hash_entries(id),
        alg TEXT NOT NULL,
        distance INTEGER NOT NULL,
        matched_at TEXT NOT NULL,
        PRIMARY KEY (report_id, entry_id)
    ) WITHOUT ROWID;
    CREATE INDEX hash_matches_entry ON hash_matches(entry_id);

    ALTER TABLE peers ADD COLUMN share_hashes INTEGER NOT NULL DEFAULT 0;
    -- When a case's hash was first found on a list: such cases come first in the triage queue
    -- (a partial index: few cases match).
    ALTER TABLE reports ADD COLUMN known_since TEXT;
    CREATE INDEX reports_known ON reports(status, known_since) WHERE known_since IS NOT NULL;
    """,
    # 15: what each peer's key document announces it reads beyond protocol v1 (a JSON list,
    # protocol.features), kept with the document: what we queue for a peer (a hashset record,
    # a report's sha1 hashes) follows it, inside the transaction that queues. Documents stored
    # before it was kept announce nothing that was defined then.
    """
    ALTER TABLE peers ADD COLUMN accepts TEXT NOT NULL DEFAULT '[]';
    """,
    # 16: rejoining after a restore (node.store.rejoin). `peer_rejoin` holds, per peer, the
    # highest outbox sequence number the restored backup held: numbers above it were given
    # again after the restore, and a pulling peer that stands beyond it gets them renumbered
    # after its cursor; `peer_outbox_floor` then keeps new numbers above that cursor.
    # `orphan_actions` keeps a peer's action on one of our cases we no longer hold (lost with
    # the restore, or sent to that peer after the backup): taken and shown, not refused.
    """
    CREATE TABLE peer_rejoin (
        peer_id TEXT PRIMARY KEY,
        outbox_seq INTEGER NOT NULL,
        restored_at TEXT NOT NULL
    );
    -- When this database was restored from a backup (an older state than its peers saw).
    CREATE TABLE restores (
        restored_at TEXT NOT NULL
    );
    -- A pulling peer's cursor beyond our numbers: nothing new is numbered at or below it.
    CREATE TABLE peer_outbox_floor (
        peer_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    -- The furthest cursor each pulling peer has sent us: one behind it means the peer lost
    -- what it had (it was restored), and gets what was delivered to it again.
    CREATE TABLE pull_cursor_high (
        peer_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    CREATE TABLE orphan_actions (
        id TEXT PRIMARY KEY,
        report_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        code TEXT NOT NULL,
        at TEXT NOT NULL,
        payload BLOB NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE INDEX orphan_actions_report ON orphan_actions(report_id);
    """,
    # 17: what a peer signed, kept in the clear beside its sealed frame: the header, signature
    # and payload of each record accepted (protocol.md §13.8), so that a peer restored from a
    # backup can ask for its records back and check them with its own keys. The sealed frame
    # alone cannot serve: it opens only with our encryption key, which rotation deletes.
    """
    ALTER TABLE inbox_envelopes ADD COLUMN signed BLOB;
    """,
    # 18: the member directory this node trusts (protocol.md §14.6, node.federation.directory).
    # One directory per node: its root in force and every root verified since (a node catches up
    # one rotation at a time), where the list is fetched from, whether members become peers by
    # themselves, the last list accepted (its wire bytes as verified, and the root it was
    # verified under, to verify it again when read back after a rotation) and the last
    # refresh. A peer says why it has its status (`status_reason`: "left the directory") and
    # whether its pin came from the directory (`via_directory`): only such a peer's
    # fingerprint, endpoint and status follow the list.
    """
    CREATE TABLE directory (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT NOT NULL,
        root_version INTEGER NOT NULL,
        root BLOB NOT NULL,
        source TEXT NOT NULL,
        auto_peer INTEGER NOT NULL DEFAULT 0,
        trusted_at TEXT NOT NULL,
        trusted_by TEXT NOT NULL,
        list BLOB,
        list_root BLOB,
        list_version INTEGER,
        list_issued_at INTEGER,
        list_expires INTEGER,
        list_members INTEGER,
        list_accepted_at TEXT,
        refreshed_at TEXT,
        refresh_error TEXT,
        refusal TEXT,
        notes TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE directory_roots (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        root BLOB NOT NULL,
        accepted_at TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    ALTER TABLE peers ADD COLUMN status_reason TEXT;
    ALTER TABLE peers ADD COLUMN via_directory INTEGER NOT NULL DEFAULT 0;
    """,
    # 19: sign-in without lock-out or leak (node/users.py, node/store/sign_in_limits.py).
    # `totp_last_step` is the TOTP time step last accepted from a person: a code is accepted
    # once. `totp_failures`/`totp_wait_until` slow a person's code guessing after a right
    # password. `sign_in_limits` holds the sign-in token buckets, so a restart does not give
    # a guesser a fresh allowance; a name is kept there only as a keyed hash.
    """
    ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
    ALTER TABLE users ADD COLUMN totp_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN totp_wait_until TEXT;
    CREATE TABLE sign_in_limits (
        key TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX sign_in_limits_at ON sign_in_limits(at);
    """,
]
