"""Process checks the tests share (Linux: they read /proc)."""


def alive(pid):
    """True while ``pid`` runs (a zombie does not count)."""
    try:
        with open('/proc/%d/stat' % pid) as fh:
            return fh.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False
