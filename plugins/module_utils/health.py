# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A health check bounded over all its attempts.

ansible.builtin.uri's ``timeout`` bounds each socket read, not the answer: an endpoint that sends its status
line one byte every three seconds kept the task running far past timeout x retries. Here each attempt has a
deadline for the whole answer (connect, request, status line, headers and up to BODY_LIMIT bytes of body),
enforced by shutting the socket down when it passes, and all attempts together have one overall deadline
(default: attempts x timeout + the pauses between them). Every message is masked (module_utils.secrets): a
health URL may carry credentials (http://user:password@host/), which are sent as HTTP basic auth.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import socket
import ssl
import threading
import time

from ansible_collections.homelab.migrations.plugins.module_utils import secrets

from http.client import HTTPConnection, HTTPException, HTTPSConnection
from urllib.parse import unquote, urlsplit

BODY_LIMIT = 64 * 1024
DEFAULT_TIMEOUT = 10
DEFAULT_RETRIES = 3
DEFAULT_DELAY = 2


class HealthError(Exception):
    """The URL cannot be checked at all (bad scheme, no host); the message is masked."""


def overall_deadline(timeout, retries, delay):
    attempts = max(1, int(retries))
    return attempts * int(timeout) + (attempts - 1) * int(delay)


def mask(text, url):
    return secrets.mask(text, [url])


def _parts(url):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # urllib's reason quotes a piece of the URL (an unencoded '#', '/' or '?' in the password makes the
        # password's start the "port"), so it is not shown: what is wrong is said without quoting the URL
        raise HealthError('health check URL %s is not a valid URL: its host part must be [user:password@]host[:port] '
                          'with a port from 0 to 65535 (an IPv6 address in [brackets]); percent-encode @ : / ? # %% '
                          'in the user and password (as %%40 %%3A %%2F %%3F %%23 %%25)' % mask(url, url))
    if '@' in url.split('://', 1)[-1][len(parts.netloc):]:
        # http://user:pa/ss@host/ is host "user", port "pa", path "/ss@host/": the password's tail would be sent
        # in clear to another host; an '@' after the host part is refused, whatever it was meant to be
        raise HealthError('health check URL %s has an @ after its host part: percent-encode / ? # @ in the user and '
                          'password (as %%2F %%3F %%23 %%40), or an @ in the path or query as %%40'
                          % mask(url, url))
    if parts.scheme not in ('http', 'https') or not parts.hostname:
        raise HealthError('health check URL %s must be an http:// or https:// URL with a host' % mask(url, url))
    path = parts.path or '/'
    if parts.query:
        path += '?' + parts.query
    headers = {'User-Agent': 'homelab.migrations health check', 'Accept': '*/*', 'Connection': 'close'}
    if parts.username is not None:
        token = '%s:%s' % (unquote(parts.username), unquote(parts.password or ''))
        headers['Authorization'] = 'Basic ' + base64.b64encode(token.encode('utf-8')).decode('ascii')
    return parts.scheme, parts.hostname, port, path, headers


def resolve(host, port, timeout):
    """getaddrinfo of ``host`` bounded by ``timeout`` seconds: (addresses, None) or (None, why).

    The resolver is not bound by socket timeouts: a DNS server that never answers kept an attempt waiting for
    resolv.conf's timeout x attempts x servers (minutes), far past the health check's deadline. It runs in a
    daemon thread that is left behind (it ends with the resolver or the process) when it does not finish.
    """
    box = {}

    def work():
        try:
            box['addrs'] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except Exception as exc:  # socket.gaierror, UnicodeError for an odd name...
            box['error'] = exc
    worker = threading.Thread(target=work, name='homelab-health-resolve')
    worker.daemon = True
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return None, 'the name %s was not resolved within %ss (DNS did not answer; timeout)' % (host, round(timeout, 1))
    if 'error' in box:
        exc = box['error']
        return None, 'cannot resolve the name %s: %s' % (host, exc)
    return box.get('addrs') or [], None


def _connector(addrs):
    """socket.create_connection over addresses resolved beforehand (the connection must not resolve again)."""
    def create_connection(address, timeout=None, source_address=None, **_kw):
        last = None
        for family, socktype, proto, _canon, sockaddr in addrs:
            sock = socket.socket(family, socktype, proto)
            try:
                if timeout is not None:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                last = exc
                sock.close()
        raise last if last is not None else OSError('no address to connect to')
    return create_connection


def attempt(url, timeout, validate_certs=True):
    """One GET of ``url`` that ends within ``timeout`` seconds: (status or -1, why or None)."""
    scheme, host, port, path, headers = _parts(url)
    started = time.monotonic()
    addrs, why = resolve(host, port or (443 if scheme == 'https' else 80), timeout)
    if addrs is None:
        return -1, mask(why, url)
    budget = timeout
    timeout = max(0.1, timeout - (time.monotonic() - started))
    if scheme == 'https':
        context = ssl.create_default_context()
        if not validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = HTTPConnection(host, port, timeout=timeout)
    conn._create_connection = _connector(addrs)
    expired = threading.Event()
    held = []  # the socket, kept: http.client drops conn.sock once the response owns it

    def cut():
        expired.set()
        for sock in held + [conn.sock]:
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    timer = threading.Timer(timeout, cut)
    timer.daemon = True
    timer.start()
    try:
        conn.connect()
        held.append(conn.sock)
        if expired.is_set():  # the timer fired while connecting: make sure the socket is cut
            cut()
        conn.request('GET', path, headers=headers)
        response = conn.getresponse()
        status = response.status
        response.read(BODY_LIMIT)
        if expired.is_set():
            return -1, 'no complete answer within %ss (timeout)' % budget
        return status, None
    except (HTTPException, OSError, ssl.SSLError, ValueError) as exc:
        if expired.is_set() or isinstance(exc, socket.timeout):
            return -1, 'no complete answer within %ss (timeout)' % budget
        return -1, mask('%s: %s' % (exc.__class__.__name__, exc), url)
    finally:
        timer.cancel()
        try:
            conn.close()
        except Exception:
            pass


def check(url, timeout=DEFAULT_TIMEOUT, retries=DEFAULT_RETRIES, delay=DEFAULT_DELAY, deadline=None,
          validate_certs=True, clock=time.monotonic, sleep=time.sleep):
    """GET ``url`` until it answers 2xx, at most ``retries`` attempts, all within ``deadline`` seconds.

    Returns {healthy, status (last HTTP status, -1 for no answer), attempts, elapsed_seconds, deadline, msg}.
    """
    attempts_allowed = max(1, int(retries))
    timeout = max(1, int(timeout))
    delay = max(0, int(delay))
    deadline = overall_deadline(timeout, attempts_allowed, delay) if not deadline else max(1, int(deadline))
    started = clock()
    end = started + deadline
    status, why, made = -1, None, 0
    while made < attempts_allowed:
        remaining = end - clock()
        if remaining <= 0:
            why = why or 'no attempt fitted in the deadline'
            break
        made += 1
        status, why = attempt(url, min(timeout, remaining), validate_certs)
        if 200 <= status < 300:
            break
        if made < attempts_allowed:
            pause = min(delay, max(0, end - clock()))
            if pause <= 0 and end - clock() <= 0:
                break
            sleep(pause)
    healthy = 200 <= status < 300
    elapsed = round(clock() - started, 3)
    what = ('HTTP %d' % status) if status > 0 else (why or 'no answer')
    if healthy:
        msg = 'health check %s answered HTTP %d (attempt %d)' % (url, status, made)
    else:
        msg = ('health check %s did not answer 2xx (%s, %d attempt(s) in %.1fs; deadline %ss for all attempts)'
               % (url, what, made, elapsed, deadline))
    return {'healthy': healthy, 'status': status, 'attempts': made, 'elapsed_seconds': elapsed,
            'deadline': deadline, 'msg': mask(msg, url), 'url': mask(url, url), 'reason': mask(what, url)}
