"""What produced an output: keras-sgn's version and git commit, and the library versions.

Every file a person may need to trust later (`report.json`, a model's
`metadata.json` and card, a training `summary.json`) records `provenance()`.
Only the standard library is imported: the versions of installed packages are
read from the package metadata (or from a module already imported), so any
layer of keras-sgn may call it.
"""

import functools
import importlib.metadata
import os
import platform
import subprocess
import sys

#: The libraries whose versions `provenance()` records by default.
LIBRARIES = ("tensorflow", "keras", "numpy")
# Distributions that provide a module under another name (first installed one wins).
_DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos",
                                 "tf-nightly", "tf-nightly-cpu")}
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_GIT_TIMEOUT_SECONDS = 5


def library_version(name):
    """The installed version of the library imported as `name`, or None.

    A module already imported reports its own `__version__` (what this process
    really runs); otherwise the installed distribution's metadata is read,
    without importing the library.
    """
    module = sys.modules.get(name)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    for distribution in _DISTRIBUTIONS.get(name, (name,)):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _git(args, cwd):
    """stdout of `git ARGS` in `cwd`, or None if git is missing or fails."""
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                timeout=_GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def git_state(package_dir=_PACKAGE_DIR):
    """`(commit, dirty)` of the git checkout keras-sgn runs from, or
    `(None, None)` (installed package, no git, not a checkout of keras-sgn).

    Only a checkout whose top folder holds the package counts: a package
    installed into some other repository's virtualenv has no commit of its own.
    `dirty` says whether tracked files differ from the commit. Never raises.
    """
    checkout = os.path.dirname(package_dir)
    top = _git(["rev-parse", "--show-toplevel"], checkout)
    if not top or os.path.realpath(top) != os.path.realpath(checkout):
        return None, None
    commit = _git(["rev-parse", "HEAD"], checkout)
    if not commit:
        return None, None
    status = _git(["status", "--porcelain", "--untracked-files=no"], checkout)
    return commit, (None if status is None else bool(status))


def git_commit(package_dir=_PACKAGE_DIR):
    """The 40-hex commit of the keras-sgn checkout, or None (see `git_state`)."""
    return git_state(package_dir)[0]


def provenance(libraries=LIBRARIES):
    """What produced an output, as a JSON-ready dict.

    Returns:
        `{"keras_sgn": version, "git_commit": 40-hex or None, "git_dirty": bool
        or None, "python": version, <library>: version or None, ...}` with one
        entry per name of `libraries` (default tensorflow, keras, numpy).

    Example:

    ```python
    keras_sgn.provenance.provenance()
    # {'keras_sgn': '0.1.0', 'git_commit': '6071cc0...', 'git_dirty': True,
    #  'python': '3.11.7', 'tensorflow': '2.21.0', 'keras': '3.15.1', 'numpy': '2.4.6'}
    ```
    """
    from keras_sgn import __version__  # the package's own version (set before its imports)

    commit, dirty = git_state()
    return {"keras_sgn": __version__, "git_commit": commit, "git_dirty": dirty,
            "python": platform.python_version(),
            **{name: library_version(name) for name in libraries}}
