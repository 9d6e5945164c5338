#!/usr/bin/env python3

# A tiny OAuth 2.0 introspection endpoint (RFC 7662) for the tests: POST
# /introspect with token=... answers from a fixed table; GET /count gives
# the number of introspection requests so far.  HTTP/1.1 with keep-alive;
# HTTPS with --cert and --key; with --client ID:SECRET the request must
# carry HTTP Basic of the form-urlencoded ID and SECRET (else 401).
#
# Tokens: "tok-alice" (active, email alice@example.com), "tok-bob" (active,
# no email, username bob@example.com), "tok-off" (inactive), "tok-expired"
# (active, exp in the past), "tok-aud" (active, another audience),
# "tok-slow" (active, answered after 12 s), "tok-chunked" (as tok-alice,
# chunked), "tok-500" (HTTP 500), "tok-bad" (not JSON).  Anything else is
# inactive.

import argparse
import base64
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNT = 0
LOCK = threading.Lock()
ARGS = None


def table(token):
    now = int(time.time())
    alice = {'active': True, 'email': 'alice@example.com',
             'username': 'alice', 'exp': now + 3600, 'aud': ['mail'],
             'iss': 'https://idp.example.com/'}
    return {
        'tok-alice': alice,
        'tok-chunked': alice,
        'tok-slow': alice,
        'tok-bob': {'active': True, 'username': 'bob@example.com',
                    'exp': now + 3600, 'aud': 'mail',
                    'iss': 'https://idp.example.com/'},
        'tok-expired': {'active': True, 'email': 'alice@example.com',
                        'exp': now - 3600, 'aud': 'mail',
                        'iss': 'https://idp.example.com/'},
        'tok-aud': {'active': True, 'email': 'alice@example.com',
                    'exp': now + 3600, 'aud': 'other',
                    'iss': 'https://idp.example.com/'},
    }.get(token, {'active': False})


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, chunked=False):
        data = body.encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        if chunked:
            self.send_header('Transfer-Encoding', 'chunked')
            self.end_headers()
            for i in range(0, len(data), 7):
                part = data[i:i + 7]
                self.wfile.write(b'%x\r\n%s\r\n' % (len(part), part))
            self.wfile.write(b'0\r\n\r\n')
        else:
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def do_GET(self):
        if self.path == '/count':
            with LOCK:
                self.answer(200, str(COUNT))
        else:
            self.answer(404, '{}')

    def do_POST(self):
        global COUNT

        length = int(self.headers.get('Content-Length', '0'))
        body = self.rfile.read(length).decode()

        if self.path != '/introspect':
            self.answer(404, '{}')
            return

        with LOCK:
            COUNT += 1

        if ARGS.client:
            cid, secret = ARGS.client.split(':', 1)
            cred = (urllib.parse.quote_plus(cid) + ':'
                    + urllib.parse.quote_plus(secret))
            want = 'Basic ' + base64.b64encode(cred.encode()).decode()
            if self.headers.get('Authorization') != want:
                self.answer(401, '{"error":"invalid_client"}')
                return

        form = urllib.parse.parse_qs(body)
        token = form.get('token', [''])[0]

        if (self.headers.get('Content-Type')
                != 'application/x-www-form-urlencoded'
                or form.get('token_type_hint') != ['access_token']):
            self.answer(400, '{"error":"invalid_request"}')
            return

        if token == 'tok-slow':
            time.sleep(12)
        if token == 'tok-500':
            self.answer(500, '{}')
            return
        if token == 'tok-bad':
            self.answer(200, 'not json')
            return

        self.answer(200, json.dumps(table(token)),
                    chunked=(token == 'tok-chunked'))


def main():
    global ARGS

    p = argparse.ArgumentParser()
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--cert')
    p.add_argument('--key')
    p.add_argument('--client')
    p.add_argument('--pidfile')
    ARGS = p.parse_args()

    httpd = ThreadingHTTPServer(('127.0.0.1', ARGS.port), Handler)
    httpd.daemon_threads = True

    if ARGS.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.cert, ARGS.key)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)

    if ARGS.pidfile:
        with open(ARGS.pidfile, 'w') as f:
            f.write(str(os.getpid()))

    sys.stdout.flush()
    httpd.serve_forever()


if __name__ == '__main__':
    main()
