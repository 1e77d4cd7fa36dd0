"""ISO 3166-1 alpha-2 country codes: the only countries a node, a peer or a case may name."""

from __future__ import annotations

from node.errors import N_, Sentence

# The officially assigned codes (ISO 3166-1, 249 entries). "EU", "UK", "XK" and other reserved
# or user-assigned codes are not countries here: routing and statistics key on these codes.
ISO_3166_ALPHA2 = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 - a table to read, not 249 quoted strings
)


# Countries whose hotlines, hosts and police work in French first: the console's default
# language and the language of host notices, one list for both (a Cameroon node once got an
# English console and French notices from two lists that disagreed).
FRENCH_SPEAKING = frozenset({"FR", "BE", "LU", "MC", "CH", "SN", "CI", "CM", "MA", "TN", "DZ"})


def language_of(country: str | None) -> str:
    """The language a node, a host or a notice in `country` gets first: "fr" or "en"."""
    return "fr" if country is not None and country.upper() in FRENCH_SPEAKING else "en"


def country_problem(value: object) -> Sentence | None:
    """Why `value` is not a country code, in words; None when it is one."""
    if not isinstance(value, str):
        return Sentence(
            N_("must be an ISO 3166-1 alpha-2 code as text (got {type})"),
            type=type(value).__name__,
        )
    if len(value) != 2 or not value.isascii() or not value.isalpha():
        return Sentence(
            N_("must be an ISO 3166-1 alpha-2 code, two letters such as FR (got {value!r})"),
            value=value,
        )
    if value.upper() not in ISO_3166_ALPHA2:
        return Sentence(
            N_("must be an ISO 3166-1 alpha-2 code: {value!r} is not an assigned country"),
            value=value,
        )
    return None
