"""Real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) and a static file server.

Nothing is downloaded: the browser and its driver come from apt (scripts/setup.sh), Selenium from PyPI, and
the driver's path is given explicitly so Selenium Manager never looks for one. The browser gets a fresh
profile, no background networking, no QUIC, a proxy on a dead port (every request that does not go to the
loopback address fails) and a host resolver that resolves nothing but 127.0.0.1; its network log is read
through the DevTools performance log, so a test can list every URL the page asked for.
"""

import json
import os
import shutil
import socket
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = shutil.which('chromedriver') or (
    '/usr/bin/chromedriver' if os.path.exists('/usr/bin/chromedriver') else None)

FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-dev-shm-usage', '--disable-extensions', '--disable-default-apps', '--no-default-browser-check',
         '--metrics-recording-only', '--password-store=basic', '--use-mock-keychain')


def missing():
    """Why the browser tests cannot run here (None when they can)."""
    if not CHROMIUM:
        return 'chromium is not installed (apt-get install chromium chromium-driver; scripts/setup.sh does it)'
    if not CHROMEDRIVER:
        return 'chromedriver is not installed (apt-get install chromium-driver; scripts/setup.sh does it)'
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed in the virtualenv (pip install -r requirements.txt)'
    return None


def dead_port():
    """A loopback port nothing listens on (bound, never listened, closed)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Browser(object):
    """One headless Chromium session (use as a context manager)."""

    def __init__(self, window=(1100, 1500)):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        self.profile = tempfile.mkdtemp(prefix='homelab-chromium-')
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument('--user-data-dir=' + self.profile)
        options.add_argument('--window-size=%d,%d' % window)
        # anything not on the loopback address goes to a proxy that is not there, and resolves to nothing
        options.add_argument('--proxy-server=http://127.0.0.1:%d' % dead_port())
        options.add_argument('--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1')
        options.set_capability('goog:loggingPrefs', {'performance': 'ALL', 'browser': 'ALL'})
        env = dict(os.environ, SE_OFFLINE='true', SE_AVOID_STATS='true')
        service = Service(executable_path=CHROMEDRIVER, env=env, log_output=os.devnull)
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(30)
        self.requested = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def requests(self):
        """Every URL the browser asked for so far (DevTools Network.requestWillBeSent)."""
        for entry in self.driver.get_log('performance'):
            message = json.loads(entry['message'])['message']
            if message.get('method') == 'Network.requestWillBeSent':
                self.requested.append(message['params']['request']['url'])
        return list(self.requested)

    def console(self):
        return self.driver.get_log('browser')


class _Handler(SimpleHTTPRequestHandler):
    server_version = 'homelab-test'
    # the extensionless API paths are JSON (what the nginx / Caddy snippets of the README configure)
    extensions_map = dict(SimpleHTTPRequestHandler.extensions_map, **{'': 'application/json'})

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.log.append((self.client_address[0], self.path))
        fail = self.server.fail.get(self.path.split('?')[0])
        if fail:
            self.send_error(fail)
            return
        super(_Handler, self).do_GET()

    def end_headers(self):
        self.send_header('Cache-Control', 'no-store')
        super(_Handler, self).end_headers()

    def log_message(self, *args):
        pass


class StaticServer(object):
    """Serves ``root`` on 127.0.0.1; records (client address, path) of every request; ``fail[path] = code``."""

    def __init__(self, root):
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), partial(_Handler, directory=root))
        self.httpd.log = []
        self.httpd.fail = {}
        self.port = self.httpd.server_address[1]
        self.url = 'http://127.0.0.1:%d' % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.1}, daemon=True)
        self.thread.start()

    @property
    def log(self):
        return self.httpd.log

    @property
    def fail(self):
        return self.httpd.fail

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
