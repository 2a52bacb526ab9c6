"""The optional packages the integrations use (scikit-learn aside, whose absence the
estimators handle themselves): imported only by the function that needs one, with an
ImportError that says what needed it and the pip extra that installs it."""
from __future__ import annotations

import importlib


def require(module: str, extra: str, what: str):
    """`module` imported, or ImportError("<what> needs <package>: pip install cgrad[<extra>]")."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {module.split('.')[0]}: pip install cgrad[{extra}] "
                          f"(or pip install {module.split('.')[0]})") from None
