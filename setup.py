"""cgrad is built by scikit-build-core from pyproject.toml and CMakeLists.txt; this file only
redirects people who run `python setup.py ...` out of habit."""
import sys

sys.exit("cgrad is built with pip, not setup.py:\n"
         "    pip install .            # build and install\n"
         "    pip install '.[test]'    # with the test dependencies\n")
