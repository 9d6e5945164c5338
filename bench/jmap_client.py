#!/usr/bin/python3

# One client of bench/jmap: lists an INBOX 50 messages at a time and
# fetches each message's text body, over JMAP or over IMAP, and prints
# "MESSAGES SECONDS" for the whole mailbox.
#
#   jmap_client.py jmap SESSION_URL USER PASSWORD
#   jmap_client.py imap HOST PORT USER PASSWORD
#
# The same fields both ways: the id, subject, sender, date received,
# flags, and the text body's bytes decoded.
#
# JMAP: one request a page, Email/query (INBOX, newest first, position,
# limit 50) and Email/get of its ids by a result reference, with
# fetchTextBodyValues.  IMAP: SELECT and UID SORT once, then for each page
# a UID FETCH of the fields and the structure, and a UID FETCH of the
# text parts (BINARY, decoded by the server), as a mail client that shows
# bodies does.

import base64
import http.client
import imaplib
import json
import sys
import time
import urllib.parse

PAGE = 50


def jmap(session_url, user, password):
    auth = 'Basic ' + base64.b64encode(
        ('%s:%s' % (user, password)).encode()).decode()
    u = urllib.parse.urlsplit(session_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def request(method, path, body=None):
        headers = {'Authorization': auth}
        if body is not None:
            headers['Content-Type'] = 'application/json'
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError('%s %s: %d %s' % (method, path, r.status,
                                                 data[:200]))
        return json.loads(data)

    session = request('GET', u.path)
    account = session['primaryAccounts']['urn:ietf:params:jmap:mail']
    api = urllib.parse.urlsplit(session['apiUrl']).path
    using = ['urn:ietf:params:jmap:core', 'urn:ietf:params:jmap:mail']

    boxes = request('POST', api, {'using': using, 'methodCalls': [
        ['Mailbox/get', {'accountId': account, 'ids': None,
                         'properties': ['role', 'totalEmails']}, 'm']]})
    inbox = [m for m in boxes['methodResponses'][0][1]['list']
             if m['role'] == 'inbox'][0]

    start = time.monotonic()
    seen = 0
    position = 0

    while True:
        r = request('POST', api, {'using': using, 'methodCalls': [
            ['Email/query', {'accountId': account,
                             'filter': {'inMailbox': inbox['id']},
                             'sort': [{'property': 'receivedAt',
                                       'isAscending': False}],
                             'position': position, 'limit': PAGE}, 'q'],
            ['Email/get', {'accountId': account,
                           '#ids': {'resultOf': 'q', 'name': 'Email/query',
                                    'path': '/ids'},
                           'properties': ['id', 'subject', 'from',
                                          'receivedAt', 'keywords',
                                          'textBody', 'bodyValues'],
                           'fetchTextBodyValues': True}, 'g']]})

        resp = r['methodResponses']
        if resp[1][0] != 'Email/get':
            raise RuntimeError('Email/get failed: %r' % (resp[1],))

        emails = resp[1][1]['list']
        for e in emails:
            text = ''.join(e['bodyValues'][p['partId']]['value']
                           for p in e['textBody'])
            if not text:
                raise RuntimeError('no text body for %s' % e['id'])
            seen += 1

        if len(emails) < PAGE:
            break
        position += PAGE

    return seen, time.monotonic() - start


def imap(host, port, user, password):
    c = imaplib.IMAP4(host, int(port), timeout=60)
    c.login(user, password)

    start = time.monotonic()
    seen = 0

    c.select('INBOX', readonly=True)
    typ, data = c.uid('SORT', '(REVERSE ARRIVAL)', 'UTF-8', 'ALL')
    uids = data[0].split()

    for i in range(0, len(uids), PAGE):
        page = b','.join(uids[i:i + PAGE]).decode()

        typ, data = c.uid('FETCH', page,
                          '(UID FLAGS INTERNALDATE BODYSTRUCTURE '
                          'BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])')
        if typ != 'OK':
            raise RuntimeError('FETCH: %r' % (data,))

        # the structure says where the text is: part 1 in the bench's
        # mailbox (single-part text/plain), as the module finds it too

        for item in data:
            if isinstance(item, tuple) and b'BODYSTRUCTURE ("text"' \
                    not in item[0].replace(b'"TEXT"', b'"text"'):
                raise RuntimeError('not a text message: %r' % (item[0],))

        typ, data = c.uid('FETCH', page, '(UID BINARY.PEEK[1])')
        if typ != 'OK':
            raise RuntimeError('FETCH BINARY: %r' % (data,))

        for item in data:
            if isinstance(item, tuple):
                if not item[1]:
                    raise RuntimeError('no text body')
                seen += 1

    c.logout()
    return seen, time.monotonic() - start


def main():
    mode = sys.argv[1]
    if mode == 'jmap':
        n, secs = jmap(*sys.argv[2:5])
    else:
        n, secs = imap(*sys.argv[2:6])
    print('%d %.6f' % (n, secs))


main()
