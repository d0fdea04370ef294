"""How names are compared: projects and usernames are unique up to case and Unicode form.

The databases fold case differently (SQLite's lower() only folds ASCII, Postgres's follows its
collation), so the folded form is computed here, stored beside the name, and unique there.
"""

import unicodedata


def name_key(name: str) -> str:
    """'Ärger', 'ärger' and 'ÄRGER' (composed or not) share one key."""
    return unicodedata.normalize("NFKC", name.strip()).casefold()


NAME_KEY_LENGTH = 400
"""Room for a folded 100-character name: case folding can lengthen text ('ß' → 'ss', 'ﬃ' → 'ffi')."""
