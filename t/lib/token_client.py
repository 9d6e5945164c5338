#!/usr/bin/python3
#
# Token logins with Python's own mail clients (imaplib, poplib, smtplib),
# for t/token_login.t.  Usage:
#
#   token_client.py PROTO PORT MECH USER TOKEN [RCPT]
#
# PROTO imap, pop3 or smtp; MECH OAUTHBEARER or XOAUTH2; USER may be "-"
# (none given).  Prints one line: "OK <what the session did>" or
# "NO <the server's reply>", and "CHALLENGE <decoded JSON>" before it when
# the server sent RFC 7628's error challenge.  Every socket has a timeout.

import base64
import imaplib
import poplib
import smtplib
import sys

proto, port, mech, user, token = sys.argv[1:6]
rcpt = sys.argv[6] if len(sys.argv) > 6 else None
port = int(port)
user = '' if user == '-' else user
challenges = []


def initial():
    if mech == 'XOAUTH2':
        return 'user=%s\x01auth=Bearer %s\x01\x01' % (user, token)
    gs2 = 'n,a=%s,' % user.replace('=', '=3D').replace(',', '=2C') \
        if user else 'n,,'
    return '%s\x01host=127.0.0.1\x01port=%d\x01auth=Bearer %s\x01\x01' % (
        gs2, port, token)


def answer(challenge):
    # the first call is for the initial response; a later one is the
    # error challenge, answered with RFC 7628's dummy response
    if challenge:
        challenges.append(challenge.decode('utf-8', 'replace')
                          if isinstance(challenge, bytes) else challenge)
        return '\x01'
    return initial()


def done(line):
    for c in challenges:
        print('CHALLENGE ' + c)
    print(line)
    sys.exit(0)


try:
    if proto == 'imap':
        m = imaplib.IMAP4('127.0.0.1', port, timeout=20)
        first = [True]

        def imap_answer(challenge):
            if first[0]:
                first[0] = False
                return initial().encode()
            challenges.append(challenge.decode('utf-8', 'replace'))
            return b'\x01'

        try:
            m.authenticate(mech, imap_answer)
        except imaplib.IMAP4.error as e:
            done('NO ' + str(e))
        typ, data = m.select('INBOX')
        m.logout()
        done('OK select %s %s' % (typ, data[0].decode()))

    if proto == 'pop3':
        p = poplib.POP3('127.0.0.1', port, timeout=20)
        ir = base64.b64encode(initial().encode()).decode()
        try:
            r = p._shortcmd('AUTH %s %s' % (mech, ir))
            if r.startswith(b'+ '):
                challenges.append(base64.b64decode(r[2:]).decode())
                r = p._shortcmd('AQ==')
        except poplib.error_proto as e:
            done('NO ' + str(e))
        count, size = p.stat()
        p.quit()
        done('OK stat %d' % count)

    if proto == 'smtp':
        s = smtplib.SMTP('127.0.0.1', port, timeout=20)
        s.ehlo('client.test')
        try:
            s.auth(mech, lambda c=None: answer(c), initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as e:
            done('NO %d %s' % (e.smtp_code, e.smtp_error.decode()))
        if rcpt:
            s.sendmail(user or 'sender@example.com', [rcpt],
                       'Subject: token\r\n\r\nsent with a token\r\n')
        s.quit()
        done('OK sent' if rcpt else 'OK auth')

except Exception as e:
    done('ERROR %s: %s' % (type(e).__name__, e))
