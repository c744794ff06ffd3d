"""Deterministic pseudonyms: the reference definition that every engine's SQL reproduces exactly.

A pseudonym is a function of a secret salt and the original value only, so the same input gives the
same output in every table, every run and every engine that shares the salt: joins on pseudonymised
columns still work, and a database restored twice gets the same fakes. Everything derives from one
digest, ``h = lower-hex sha256(utf8(salt || value))``; the SQL in ``dialects/`` computes the same
``h`` on the server (set-based), and the tests compare both against these functions.

``fake_email`` and ``hash`` keep distinct inputs distinct (96 or up to 256 bits of the digest), so a
unique column stays unique; names, phone numbers and addresses are drawn from small lists and are not
unique-preserving (a unique column must use ``fake_email`` or ``hash``; the database's own unique
index turns any collision into a loud failure rather than a silent merge).
"""

from __future__ import annotations

import hashlib

FIRST_NAMES = (
    "Ada", "Alex", "Amara", "Ben", "Bea", "Cal", "Chloe", "Dara", "Dev", "Eden", "Elif", "Ezra",
    "Femi", "Fern", "Gael", "Grace", "Hal", "Hana", "Ida", "Isla", "Jo", "Jonah", "Kai", "Kemi",
    "Lena", "Liam", "Mae", "Milo", "Nia", "Noor", "Oli", "Ona", "Pia", "Pip", "Quinn", "Rae",
    "Remy", "Rosa", "Sami", "Sol", "Tara", "Theo", "Uma", "Val", "Vik", "Wren", "Xan", "Yara",
    "Yusuf", "Zac", "Zoe", "Arlo", "Bram", "Cleo", "Dot", "Elin", "Fox", "Gus", "Hugo", "Ines",
    "Jude", "Kit", "Lola", "Max",
)  # fmt: skip
LAST_NAMES = (
    "Abbot", "Ashdown", "Barrow", "Birch", "Brook", "Carden", "Clay", "Colby", "Dale", "Drake",
    "Elm", "Farley", "Fenwick", "Finch", "Garth", "Glen", "Hale", "Heath", "Holm", "Ives",
    "Kemp", "Lark", "Lowe", "Marsh", "Mead", "Moor", "Nash", "Norr", "Oakes", "Orme", "Penn",
    "Pike", "Quill", "Reed", "Rook", "Rowe", "Sallow", "Shaw", "Sorrel", "Stone", "Tarn",
    "Thorne", "Tull", "Vale", "Vane", "Wade", "Ward", "Wells", "West", "Wick", "Wild", "Winter",
    "Wold", "Wren", "Yarrow", "York", "Ames", "Bell", "Cobb", "Dunn", "Eyre", "Frost", "Gray", "Hart",
)  # fmt: skip
STREETS = (
    "Acacia Avenue", "Birch Road", "Canal Street", "Dock Lane", "Elm Grove", "Ferry Road",
    "Garden Row", "High Street", "Ivy Close", "Juniper Way", "Kiln Lane", "Larch Drive",
    "Mill Lane", "North Street", "Orchard Way", "Park Road", "Quay Street", "River Walk",
    "Station Road", "Tannery Lane", "Union Street", "Victoria Road", "Willow Crescent", "Yew Court",
)  # fmt: skip
TOWNS = (
    "Ambridge", "Borchester", "Casterbridge", "Dunmore", "Eastwick", "Felpersham", "Greendale",
    "Holby", "Ingleton", "Jericho", "Kingsbridge", "Lymington", "Midsomer", "Newbury Vale",
    "Oakham", "Pagford", "Royston Vasey", "Summerisle", "Trumpton", "Walford",
)  # fmt: skip

#: Ofcom reserves 07700 900000-900999 for fiction, so a fake phone number is never someone's.
FAKE_PHONE_PREFIX = "07700 900"
FAKE_EMAIL_PREFIX = "anon-"
EMAIL_DIGEST_CHARS = 24  # 96 bits: collisions are negligible even for billions of addresses
HASH_CHARS = 64

# Which hex digits of the digest drive which choice (0-based start, 4 hex digits = 0..65535 each).
NAME_FIRST_AT, NAME_LAST_AT, PHONE_AT, HOUSE_AT, STREET_AT, TOWN_AT = 0, 4, 8, 12, 16, 20
HOUSE_NUMBERS = 199


def digest(salt: str, value: str) -> str:
    """``lower-hex sha256(utf8(salt || value))``: the digest every pseudonym derives from."""
    return hashlib.sha256((salt + value).encode("utf-8")).hexdigest()


def hex_int(h: str, start: int) -> int:
    """The 4 hex digits of ``h`` at ``start`` (0-based) as an integer."""
    return int(h[start : start + 4], 16)


def fake_email(salt: str, value: str, domain: str) -> str:
    """``anon-<24 hex digits>@<domain>``."""
    return f"{FAKE_EMAIL_PREFIX}{digest(salt, value)[:EMAIL_DIGEST_CHARS]}@{domain}"


def fake_name(salt: str, value: str) -> str:
    """A first and a last name from the lists."""
    h = digest(salt, value)
    first = FIRST_NAMES[hex_int(h, NAME_FIRST_AT) % len(FIRST_NAMES)]
    last = LAST_NAMES[hex_int(h, NAME_LAST_AT) % len(LAST_NAMES)]
    return f"{first} {last}"


def fake_phone(salt: str, value: str) -> str:
    """A number in Ofcom's drama range, ``07700 900xyz``."""
    return f"{FAKE_PHONE_PREFIX}{hex_int(digest(salt, value), PHONE_AT) % 1000:03d}"


def fake_address(salt: str, value: str) -> str:
    """``<house number> <street>, <town>`` from the lists (the towns are fictional)."""
    h = digest(salt, value)
    house = 1 + hex_int(h, HOUSE_AT) % HOUSE_NUMBERS
    street = STREETS[hex_int(h, STREET_AT) % len(STREETS)]
    town = TOWNS[hex_int(h, TOWN_AT) % len(TOWNS)]
    return f"{house} {street}, {town}"


def keyed_hash(salt: str, value: str, length: int = HASH_CHARS) -> str:
    """The first ``length`` hex digits of the digest."""
    return digest(salt, value)[:length]


def redact(value: str) -> str:
    """As many ``*`` as the value has characters."""
    return "*" * len(value)
