"""connection.py without a server: psycopg2 is the driver, and libpq's URL parser is used when psycopg2 cannot be
imported. Against a real server: tests/integration/plugins/module_utils/test_connection.py."""

import psycopg2
import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import connection as c
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl, UrlError


def test_psycopg2_is_the_driver():
    assert c.HAS_PSYCOPG2 and c.psycopg2 is psycopg2


# ------------------------------------------------------------ libpq's parser: what users really write
def _refused(url):
    with pytest.raises(UrlError) as err:
        DbUrl(url)
    return str(err.value)


def test_libpq_parser_without_psycopg2(monkeypatch):
    """homelab_pg_backup runs where only the client tools are: libpq's PQconninfoParse through ctypes."""
    with_psycopg2 = [DbUrl(u).conninfo() for u in ('postgresql://app:Zq7Vx?K9wRt@db.lan:5432/app',
                                                   "host=/run/pg dbname=app password='a b\\'c'",
                                                   'postgresql://u:p@h1:1,h2:2/db?options=-c%20x%3Dy')]
    monkeypatch.setattr(c, 'psycopg2', None)
    without = [DbUrl(u).conninfo() for u in ('postgresql://app:Zq7Vx?K9wRt@db.lan:5432/app',
                                             "host=/run/pg dbname=app password='a b\\'c'",
                                             'postgresql://u:p@h1:1,h2:2/db?options=-c%20x%3Dy')]
    assert without == with_psycopg2
    text = _refused('postgresql://u:Secret50%off@h/db')
    assert 'Secret' not in text and 'percent-encoded' in text
