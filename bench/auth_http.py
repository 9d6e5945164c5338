#!/usr/bin/python3

# An auth_http server written the usual simple way, for bench/login's
# stock nginx: every login goes to one Dovecot.
#
#   auth_http.py LISTEN_PORT BACKEND_IMAP_PORT BACKEND_POP3_PORT

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):

    def do_GET(self):
        proto = self.headers.get('Auth-Protocol', 'imap')
        port = sys.argv[2] if proto == 'imap' else sys.argv[3]

        self.send_response(200)
        self.send_header('Auth-Status', 'OK')
        self.send_header('Auth-Server', '127.0.0.1')
        self.send_header('Auth-Port', port)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
