/*
 * Copyright (C) ngx_mail_plus_module developers
 *
 * The web mail page: a JMAP client (RFC 8620, RFC 8621) in plain
 * JavaScript, with fetch() and the DOM only.  The credentials are kept in
 * this closure and nowhere else (no storage, no cookies); mail content
 * reaches the page as text (textContent), and an HTML body only inside a
 * sandboxed frame without scripts, its remote content blocked.
 */

'use strict';

(function () {

const CORE = 'urn:ietf:params:jmap:core';
const MAIL = 'urn:ietf:params:jmap:mail';
const SUBMISSION = 'urn:ietf:params:jmap:submission';
const PAGE = 50;

const ROLES = ['inbox', 'drafts', 'sent', 'archive', 'junk', 'trash'];
const ROLE_NAMES = {
    inbox: 'Inbox', drafts: 'Drafts', sent: 'Sent', archive: 'Archive',
    junk: 'Junk', trash: 'Trash', flagged: 'Flagged', important: 'Important',
    all: 'All mail', subscribed: 'Subscribed'
};

const LIST_PROPERTIES = ['id', 'threadId', 'mailboxIds', 'from', 'subject',
    'receivedAt', 'keywords', 'preview', 'hasAttachment'];
const READ_PROPERTIES = ['id', 'blobId', 'threadId', 'mailboxIds',
    'keywords', 'from', 'to', 'cc', 'replyTo', 'subject', 'sentAt',
    'receivedAt', 'messageId', 'inReplyTo', 'references', 'textBody',
    'htmlBody', 'attachments', 'bodyValues'];

/* what the frame of an HTML body may load: nothing but data: and cid: */
const FRAME_CSP = "default-src 'none'; img-src data: cid:; "
    + "style-src 'unsafe-inline'; font-src data:; form-action 'none'";

const $ = (id) => document.getElementById(id);

/* the state: all of it in memory, dropped at sign-out */

let auth = null;            /* "Basic ...", in memory only */
let session = null;
let accountId = null;
let mailboxes = [];         /* in display order, with depth */
let byId = new Map();
let current = null;         /* the mailbox shown */
let search = '';
let position = 0;
let total = null;
let emails = [];            /* the page shown */
let cursor = -1;            /* its selected row */
let opened = null;          /* the Email read, or null */
let view = 'html';
let identities = [];
let identityError = null;   /* why there are none */
let replyTo = null;         /* inReplyTo/references of a reply */
let busy = 0;
let statusTimer = null;


/* errors and the status area */

class MailError extends Error {
}

function showStatus(text, error) {
    const box = $('status');

    clearTimeout(statusTimer);
    $('status-text').textContent = text;
    box.classList.toggle('error', !!error);
    box.setAttribute('role', error ? 'alert' : 'status');
    box.hidden = false;

    if (!error) {
        statusTimer = setTimeout(() => { box.hidden = true; }, 5000);
    }
}

function clearStatus() {
    clearTimeout(statusTimer);
    $('status').hidden = true;
}

function fail(e) {
    if (e && e.status === 401 && auth) {
        signOut();
        showStatus('Signed out: the server refused the password.', true);
        return;
    }

    showStatus((e && e.message) || String(e), true);
}

/* runs an action, with its errors shown and the page marked busy */

async function run(fn) {
    busy++;
    document.body.dataset.busy = String(busy);

    try {
        return await fn();
    } catch (e) {
        fail(e);
        return undefined;
    } finally {
        busy--;
        document.body.dataset.busy = String(busy);
    }
}


/* HTTP and JMAP */

function basic(user, pass) {
    const bytes = new TextEncoder().encode(user + ':' + pass);
    let s = '';

    for (const b of bytes) {
        s += String.fromCharCode(b);
    }

    return 'Basic ' + btoa(s);
}

async function http(url, opts) {
    const o = opts || {};
    const headers = Object.assign({ Authorization: auth }, o.headers);
    let res;

    try {
        /* credentials omitted: no cookies, and no browser login prompt */
        res = await fetch(url, {
            method: o.method || 'GET', headers: headers, body: o.body,
            credentials: 'omit', cache: 'no-store',
            referrerPolicy: 'no-referrer'
        });
    } catch (e) {
        throw new MailError('The mail server cannot be reached ('
            + e.message + ').');
    }

    if (res.ok) {
        return res;
    }

    let detail = '';

    try {
        if (/json/.test(res.headers.get('Content-Type') || '')) {
            const p = await res.json();
            detail = [p.type, p.limit, p.detail || p.title]
                .filter((x) => typeof x === 'string' && x.length)
                .join(', ');
        }
    } catch (e) {
        detail = '';
    }

    const err = new MailError('HTTP ' + res.status
        + (res.statusText ? ' ' + res.statusText : '')
        + (detail ? ': ' + detail : ''));
    err.status = res.status;
    throw err;
}

/*
 * one API request; answers a function (callId, name) giving the arguments
 * of that response; a method error is thrown with its type and description
 */

async function api(calls) {
    const res = await http(session.apiUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ using: [CORE, MAIL, SUBMISSION],
            methodCalls: calls })
    });

    let data;

    try {
        data = await res.json();
    } catch (e) {
        throw new MailError('The server answered something that is not '
            + 'JSON.');
    }

    if (!data || !Array.isArray(data.methodResponses)) {
        throw new MailError('The server answered something that is not a '
            + 'JMAP response.');
    }

    const names = new Map(calls.map((c) => [c[2], c[0]]));

    for (const r of data.methodResponses) {
        if (Array.isArray(r) && r[0] === 'error') {
            const a = r[1] || {};
            throw new MailError((names.get(r[2]) || 'A method') + ' failed: '
                + a.type + (a.description ? ' (' + a.description + ')' : ''));
        }
    }

    return (id, name) => {
        for (const r of data.methodResponses) {
            if (Array.isArray(r) && r[2] === id
                && (!name || r[0] === name))
            {
                return r[1] || {};
            }
        }

        throw new MailError('The server gave no answer to '
            + (name || names.get(id)) + '.');
    };
}

/* a /set's refusals (notCreated, notUpdated, notDestroyed) thrown */

function checkSet(name, args, what) {
    for (const key of ['notCreated', 'notUpdated', 'notDestroyed']) {
        const errors = args[key];

        if (!errors || typeof errors !== 'object') {
            continue;
        }

        for (const id of Object.keys(errors)) {
            const e = errors[id] || {};
            let text = (what || name) + ' refused: ' + e.type;

            if (e.description) {
                text += ' (' + e.description + ')';
            }

            if (Array.isArray(e.properties) && e.properties.length) {
                text += ', properties: ' + e.properties.join(', ');
            }

            throw new MailError(text);
        }
    }
}

function ref(resultOf, name, path) {
    return { resultOf: resultOf, name: name, path: path };
}

/* RFC 6570 level 1 expansion of the session's URL templates */

function expand(template, vars) {
    return template.replace(/\{([a-zA-Z]+)\}/g,
        (m, k) => encodeURIComponent(vars[k] === undefined ? '' : vars[k]));
}


/* signing in and out */

async function signIn(ev) {
    ev.preventDefault();
    clearStatus();

    const user = $('login-user').value.trim();
    const pass = $('login-password').value;
    const meta = document.querySelector('meta[name="jmap-session"]');
    const url = new URL(meta ? meta.content : '/jmap/session',
        location.href).href;

    auth = basic(user, pass);
    $('login-password').value = '';

    const ok = await run(async () => {
        let res;

        try {
            res = await http(url);
        } catch (e) {
            if (e.status === 401) {
                throw new MailError('Sign-in refused: wrong user or '
                    + 'password.');
            }
            throw e;
        }

        const s = await res.json();

        if (!s || typeof s.apiUrl !== 'string' || !s.accounts
            || !s.capabilities || !s.capabilities[MAIL])
        {
            throw new MailError('This server does not offer JMAP mail.');
        }

        session = s;
        accountId = (s.primaryAccounts && s.primaryAccounts[MAIL])
            || Object.keys(s.accounts)[0];
        return true;
    });

    if (!ok) {
        auth = null;
        session = null;
        $('login-password').focus();
        return;
    }

    clearStatus();
    $('login').hidden = true;
    $('app').hidden = false;
    $('user-name').textContent = session.username || user;

    await run(async () => {
        await loadMailboxes();
        const inbox = role('inbox') || mailboxes[0];
        if (inbox) {
            await selectMailbox(inbox.id);
        }
        await loadIdentities();
    });

    $('message-list').focus();
}

function signOut() {
    auth = null;
    session = null;
    accountId = null;
    mailboxes = [];
    byId = new Map();
    current = null;
    search = '';
    emails = [];
    cursor = -1;
    identities = [];
    identityError = null;
    closeMessage();
    closeCompose();

    $('mailbox-list').replaceChildren();
    $('message-list').replaceChildren();
    $('move-select').replaceChildren();
    $('compose-from').replaceChildren();
    $('search-input').value = '';
    $('user-name').textContent = '';
    $('app').hidden = true;
    $('login').hidden = false;
    $('login-password').value = '';
    document.title = 'Mail';
    clearStatus();
    $('login-user').focus();
}


/* mailboxes */

function role(r) {
    return mailboxes.find((m) => m.role === r) || null;
}

function mailboxLabel(m) {
    return m.name || ROLE_NAMES[m.role] || '(no name)';
}

function sortMailboxes(list) {
    const children = new Map();
    const out = [];

    for (const m of list) {
        const p = m.parentId && list.some((x) => x.id === m.parentId)
            ? m.parentId : null;
        if (!children.has(p)) {
            children.set(p, []);
        }
        children.get(p).push(m);
    }

    const rank = (m) => {
        const i = ROLES.indexOf(m.role);
        return i < 0 ? ROLES.length : i;
    };

    const walk = (parent, depth) => {
        const kids = (children.get(parent) || []).slice().sort((a, b) =>
            rank(a) - rank(b)
            || (a.sortOrder || 0) - (b.sortOrder || 0)
            || mailboxLabel(a).localeCompare(mailboxLabel(b)));

        for (const m of kids) {
            if (depth > 20 || out.includes(m)) {
                continue;
            }
            m.depth = depth;
            out.push(m);
            walk(m.id, depth + 1);
        }
    };

    walk(null, 0);
    return out;
}

async function loadMailboxes() {
    const get = await api([['Mailbox/get', { accountId: accountId,
        ids: null, properties: ['id', 'name', 'parentId', 'role',
        'sortOrder', 'totalEmails', 'unreadEmails', 'myRights'] }, 'm']]);

    const list = get('m', 'Mailbox/get').list;

    if (!Array.isArray(list)) {
        throw new MailError('Mailbox/get gave no list.');
    }

    mailboxes = sortMailboxes(list);
    byId = new Map(mailboxes.map((m) => [m.id, m]));
    renderMailboxes();
}

function renderMailboxes() {
    const ul = $('mailbox-list');
    const items = [];

    for (const m of mailboxes) {
        const li = document.createElement('li');
        const b = document.createElement('button');
        const name = document.createElement('span');
        const unread = m.unreadEmails || 0;

        b.type = 'button';
        b.className = 'mailbox';
        b.dataset.id = m.id;
        if (m.role) {
            b.dataset.role = m.role;
        }
        b.style.paddingLeft = (0.75 + m.depth * 1) + 'em';
        b.setAttribute('aria-current', m.id === current ? 'true' : 'false');

        name.className = 'mailbox-name';
        name.textContent = mailboxLabel(m);
        b.append(name);

        if (m.role && ROLE_NAMES[m.role]
            && ROLE_NAMES[m.role].toLowerCase() !== mailboxLabel(m)
                .toLowerCase())
        {
            const r = document.createElement('span');
            r.className = 'mailbox-role';
            r.textContent = ROLE_NAMES[m.role];
            b.append(r);
        }

        if (unread > 0) {
            const c = document.createElement('span');
            c.className = 'count';
            c.textContent = String(unread);
            c.setAttribute('aria-label', unread + ' unread');
            b.append(c);
        }

        b.addEventListener('click', () => run(() => selectMailbox(m.id)));
        li.append(b);
        items.push(li);
    }

    ul.replaceChildren(...items);
    renderMoveTargets();
    updateTitle();
}

function renderMoveTargets() {
    const sel = $('move-select');
    const first = document.createElement('option');

    first.value = '';
    first.textContent = 'Move to\u2026';

    const opts = [first];

    for (const m of mailboxes) {
        if (m.id === current) {
            continue;
        }
        const o = document.createElement('option');
        o.value = m.id;
        o.textContent = '\u00a0\u00a0'.repeat(m.depth) + mailboxLabel(m);
        opts.push(o);
    }

    sel.replaceChildren(...opts);
}

function updateTitle() {
    const m = byId.get(current);

    if (!m) {
        document.title = 'Mail';
        return;
    }

    document.title = mailboxLabel(m)
        + (m.unreadEmails ? ' (' + m.unreadEmails + ')' : '') + ' \u2014 Mail';
}

async function selectMailbox(id) {
    current = id;
    position = 0;
    search = '';
    $('search-input').value = '';
    $('search-clear').hidden = true;
    closeMessage();
    renderMailboxes();
    await loadList();
}


/* the message list */

function formatDate(s, long) {
    const d = new Date(s);

    if (isNaN(d.getTime())) {
        return '';
    }

    if (long) {
        return d.toLocaleString();
    }

    const now = new Date();

    if (d.toDateString() === now.toDateString()) {
        return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    }

    return d.toLocaleDateString([], { year: d.getFullYear()
        === now.getFullYear() ? undefined : 'numeric', month: 'short',
        day: 'numeric' });
}

function address(a) {
    if (!a) {
        return '';
    }
    if (a.name && a.email) {
        return a.name + ' <' + a.email + '>';
    }
    return a.name || a.email || '';
}

function addresses(list) {
    return Array.isArray(list) ? list.map(address).join(', ') : '';
}

function sender(e) {
    const f = Array.isArray(e.from) && e.from[0];
    return f ? (f.name || f.email || '') : '';
}

async function loadList(keep) {
    const filter = { inMailbox: current };

    if (search) {
        filter.text = search;
    }

    const query = { accountId: accountId, filter: filter,
        sort: [{ property: 'receivedAt', isAscending: false }],
        limit: PAGE, calculateTotal: true };

    /* the first page without "position" (0 is its default) */
    if (position > 0) {
        query.position = position;
    }

    const get = await api([
        ['Email/query', query, 'q'],
        ['Email/get', { accountId: accountId,
            '#ids': ref('q', 'Email/query', '/ids'),
            properties: LIST_PROPERTIES }, 'g']
    ]);

    const q = get('q', 'Email/query');
    const g = get('g', 'Email/get');
    const found = new Map((g.list || []).map((e) => [e.id, e]));

    total = typeof q.total === 'number' ? q.total : null;
    position = typeof q.position === 'number' ? q.position : position;
    emails = (q.ids || []).map((id) => found.get(id)).filter((e) => e);

    if (keep !== undefined) {
        const i = emails.findIndex((e) => e.id === keep);
        cursor = i >= 0 ? i : Math.min(cursor, emails.length - 1);
    } else {
        cursor = emails.length ? 0 : -1;
    }

    renderList();
}

function renderList() {
    const ul = $('message-list');
    const rows = emails.map((e, i) => {
        const li = document.createElement('li');
        const unread = !(e.keywords && e.keywords.$seen);
        const top = document.createElement('div');
        const from = document.createElement('span');
        const date = document.createElement('time');
        const subject = document.createElement('div');
        const preview = document.createElement('div');

        li.id = 'msg-' + i;
        li.className = 'message-row' + (unread ? ' unread' : '');
        li.dataset.id = e.id;
        li.setAttribute('role', 'option');
        li.setAttribute('aria-selected', i === cursor ? 'true' : 'false');

        top.className = 'row-top';
        from.className = 'from';
        from.textContent = (unread ? '\u2022 ' : '') + (sender(e)
            || '(no sender)');
        if (unread) {
            from.setAttribute('aria-label', 'Unread, from ' + (sender(e)
                || 'no sender'));
        }
        date.className = 'date';
        date.dateTime = e.receivedAt || '';
        date.textContent = formatDate(e.receivedAt);
        top.append(from, date);

        subject.className = 'row-subject';
        subject.textContent = e.subject || '(no subject)';

        if (e.hasAttachment) {
            const clip = document.createElement('span');
            clip.className = 'clip';
            clip.textContent = 'attachment';
            top.insertBefore(clip, date);
        }

        preview.className = 'preview';
        preview.textContent = e.preview || '';

        li.append(top, subject, preview);
        li.addEventListener('click', () => {
            setCursor(i);
            run(() => openMessage(e.id));
        });

        return li;
    });

    ul.replaceChildren(...rows);
    ul.setAttribute('aria-activedescendant', cursor >= 0 ? 'msg-' + cursor
        : '');
    if (cursor < 0) {
        ul.removeAttribute('aria-activedescendant');
    }

    const m = byId.get(current);
    $('list-title').textContent = (search ? 'Search: ' + search + ' in '
        : '') + (m ? mailboxLabel(m) : 'Messages');
    $('list-empty').hidden = emails.length > 0;

    const last = position + emails.length;
    $('list-range').textContent = emails.length
        ? (position + 1) + '\u2013' + last
            + (total !== null ? ' of ' + total : '')
        : '';
    $('page-newer').disabled = position === 0;
    $('page-older').disabled = total !== null ? last >= total
        : emails.length < PAGE;
}

function setCursor(i) {
    const ul = $('message-list');

    if (!emails.length) {
        cursor = -1;
        return;
    }

    cursor = Math.max(0, Math.min(emails.length - 1, i));

    for (const li of ul.children) {
        li.setAttribute('aria-selected', li.id === 'msg-' + cursor
            ? 'true' : 'false');
    }

    ul.setAttribute('aria-activedescendant', 'msg-' + cursor);

    const row = $('msg-' + cursor);
    if (row) {
        row.scrollIntoView({ block: 'nearest' });
    }
}

function page(delta) {
    return run(async () => {
        position = Math.max(0, position + delta * PAGE);
        await loadList();
        $('message-list').focus();
    });
}


/* reading a message */

function bodyText(m, parts) {
    const out = [];

    for (const p of parts || []) {
        const v = m.bodyValues && m.bodyValues[p.partId];

        if (!v || typeof v.value !== 'string') {
            continue;
        }

        if (p.type === 'text/html') {
            /* an HTML part read as text: parsed, never shown as HTML */
            const doc = new DOMParser().parseFromString(v.value,
                'text/html');
            out.push(doc.body ? doc.body.textContent : '');
        } else if (/^text\//.test(p.type || 'text/plain')) {
            out.push(v.value);
        }

        if (v.isTruncated) {
            out.push('\n[\u2026 the rest of this part is not shown]');
        }
    }

    return out.join('\n');
}

function hasHtml(m) {
    return (m.htmlBody || []).some((p) => p.type === 'text/html'
        && m.bodyValues && m.bodyValues[p.partId]);
}

function escapeHtml(s) {
    return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;',
        '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const REMOTE = /^\s*(https?:|\/\/|ftp:)/i;
const REMOTE_CSS = /url\s*\(\s*['"]?\s*(https?:|\/\/)|@import/i;
const DROP = 'script, noscript, iframe, frame, frameset, object, embed, '
    + 'applet, base, link, meta, portal, template, form';

/*
 * An HTML body for the frame: parsed by DOMParser (an inert document: no
 * script runs, nothing is loaded), scripts, frames, plugins and handlers
 * dropped, remote references removed and counted, our Content-Security-
 * Policy put first in the head; the frame is sandboxed besides.
 */

function frameDocument(m) {
    const html = [];

    for (const p of m.htmlBody || []) {
        const v = m.bodyValues && m.bodyValues[p.partId];

        if (!v || typeof v.value !== 'string') {
            continue;
        }

        if (p.type === 'text/html') {
            html.push(v.value);
        } else if (/^text\//.test(p.type || '')) {
            html.push('<pre>' + escapeHtml(v.value) + '</pre>');
        }
    }

    const doc = new DOMParser().parseFromString(html.join('\n'),
        'text/html');
    let remote = 0;

    for (const el of doc.querySelectorAll(DROP)) {
        el.remove();
    }

    for (const el of doc.querySelectorAll('*')) {
        for (const a of Array.from(el.attributes)) {
            const n = a.name.toLowerCase();

            if (n.startsWith('on') || n === 'srcdoc' || n === 'formaction'
                || n === 'ping')
            {
                el.removeAttribute(a.name);

            } else if (['src', 'srcset', 'background', 'poster', 'data',
                'lowsrc', 'dynsrc', 'action', 'xlink:href'].includes(n))
            {
                if (n === 'srcset' || REMOTE.test(a.value)
                    || !/^\s*(data:|cid:)/i.test(a.value))
                {
                    remote += REMOTE.test(a.value) || n === 'srcset' ? 1 : 0;
                    el.removeAttribute(a.name);
                }

            } else if (n === 'style' && REMOTE_CSS.test(a.value)) {
                remote++;
                el.removeAttribute(a.name);

            } else if (n === 'href' && /^\s*(javascript|data|vbscript):/i
                       .test(a.value))
            {
                el.removeAttribute(a.name);

            } else if (n === 'href' && el.localName !== 'a'
                       && el.localName !== 'area')
            {
                remote += REMOTE.test(a.value) ? 1 : 0;
                el.removeAttribute(a.name);
            }
        }

        if (el.localName === 'style' && REMOTE_CSS.test(el.textContent)) {
            remote++;
            el.textContent = el.textContent.replace(
                /url\s*\([^)]*\)|@import[^;]*;?/gi, 'none');
        }

        if (el.localName === 'a' || el.localName === 'area') {
            el.setAttribute('target', '_blank');
            el.setAttribute('rel', 'noopener noreferrer');
        }
    }

    const head = doc.head || doc.documentElement.insertBefore(
        doc.createElement('head'), doc.body);
    const csp = doc.createElement('meta');
    const referrer = doc.createElement('meta');

    csp.setAttribute('http-equiv', 'Content-Security-Policy');
    csp.setAttribute('content', FRAME_CSP);
    referrer.setAttribute('name', 'referrer');
    referrer.setAttribute('content', 'no-referrer');
    head.prepend(csp, referrer);

    return { html: '<!DOCTYPE html>\n' + doc.documentElement.outerHTML,
        remote: remote };
}

async function openMessage(id) {
    const get = await api([['Email/get', { accountId: accountId,
        ids: [id], properties: READ_PROPERTIES, fetchTextBodyValues: true,
        fetchHTMLBodyValues: true, maxBodyValueBytes: 1048576 }, 'm']]);
    const r = get('m', 'Email/get');
    const m = (r.list || [])[0];

    if (!m) {
        throw new MailError('This message is no longer there.');
    }

    opened = m;
    view = hasHtml(m) ? 'html' : 'text';
    renderMessage();

    if (!(m.keywords && m.keywords.$seen)) {
        await setSeen(m.id, true, true);
    }
}

function renderMessage() {
    const m = opened;
    const cc = addresses(m.cc);

    $('reader-empty').hidden = true;
    $('message').hidden = false;
    $('message-subject').textContent = m.subject || '(no subject)';
    $('message-from').textContent = addresses(m.from);
    $('message-to').textContent = addresses(m.to);
    $('message-cc').textContent = cc;
    $('message-cc').hidden = !cc;
    $('message-cc-label').hidden = !cc;
    $('message-date').textContent = formatDate(m.sentAt || m.receivedAt,
        true);
    $('unread-button').textContent = m.keywords && m.keywords.$seen
        ? 'Mark unread' : 'Mark read';
    renderMoveTargets();
    renderBody();
    renderAttachments();
}

function renderBody() {
    const m = opened;
    const frame = $('message-html');
    const text = $('message-text');
    const html = hasHtml(m);

    $('body-switch').hidden = !html;
    $('show-html').setAttribute('aria-pressed', String(view === 'html'));
    $('show-text').setAttribute('aria-pressed', String(view === 'text'));

    if (html && view === 'html') {
        const d = frameDocument(m);

        text.hidden = true;
        text.textContent = '';
        frame.srcdoc = d.html;
        frame.hidden = false;
        $('remote-notice').hidden = d.remote === 0;
        return;
    }

    frame.hidden = true;
    frame.srcdoc = '';
    $('remote-notice').hidden = true;
    text.textContent = bodyText(m, m.textBody) || '(no text)';
    text.hidden = false;
}

function renderAttachments() {
    const m = opened;
    const list = (m.attachments || []).filter((a) => a.blobId);
    const items = list.map((a) => {
        const li = document.createElement('li');
        const link = document.createElement('a');
        const name = a.name || 'attachment';
        const type = a.type || 'application/octet-stream';

        const url = new URL(expand(session.downloadUrl, {
            accountId: accountId, blobId: a.blobId, name: name,
            type: type }), location.href);

        /* a link of the web only, whatever the session says */
        if (url.protocol === 'https:' || url.protocol === 'http:') {
            link.href = url.href;
        }

        link.textContent = name + (a.size ? ' (' + size(a.size) + ')' : '');
        link.addEventListener('click', (ev) => {
            ev.preventDefault();
            run(() => download(link.href, name));
        });
        li.append(link);
        return li;
    });

    $('attachment-list').replaceChildren(...items);
    $('attachments').hidden = items.length === 0;
}

function size(n) {
    if (n < 1024) {
        return n + ' B';
    }
    if (n < 1024 * 1024) {
        return Math.round(n / 1024) + ' KB';
    }
    return (n / 1024 / 1024).toFixed(1) + ' MB';
}

/* a download carries the credentials too: fetched, then saved */

async function download(url, name) {
    const res = await http(url);
    const blob = await res.blob();
    const a = document.createElement('a');

    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

function closeMessage() {
    opened = null;
    $('message').hidden = true;
    $('reader-empty').hidden = false;
    $('message-html').srcdoc = '';
    $('message-text').textContent = '';
}


/* changes: read/unread, move, delete */

function target() {
    if (opened) {
        return opened;
    }
    return cursor >= 0 ? emails[cursor] : null;
}

async function setSeen(id, seen, quiet) {
    const get = await api([['Email/set', { accountId: accountId,
        update: { [id]: { 'keywords/$seen': seen ? true : null } } },
        'u']]);

    checkSet('Email/set', get('u', 'Email/set'), seen ? 'Marking read'
        : 'Marking unread');

    for (const e of emails.concat(opened ? [opened] : [])) {
        if (e.id === id) {
            e.keywords = Object.assign({}, e.keywords);
            if (seen) {
                e.keywords.$seen = true;
            } else {
                delete e.keywords.$seen;
            }
        }
    }

    if (opened && opened.id === id) {
        $('unread-button').textContent = seen ? 'Mark unread' : 'Mark read';
    }

    renderList();
    await loadMailboxes();

    if (!quiet) {
        showStatus(seen ? 'Marked read.' : 'Marked unread.');
    }
}

function toggleSeen() {
    const e = target();

    if (!e) {
        return undefined;
    }

    return run(() => setSeen(e.id, !(e.keywords && e.keywords.$seen)));
}

async function moveTo(e, mailboxId, what) {
    const get = await api([['Email/set', { accountId: accountId,
        update: { [e.id]: { mailboxIds: { [mailboxId]: true } } } }, 'u']]);

    checkSet('Email/set', get('u', 'Email/set'), what);
    await afterRemoval(e);
}

async function destroy(e) {
    const get = await api([['Email/set', { accountId: accountId,
        destroy: [e.id] }, 'd']]);

    checkSet('Email/set', get('d', 'Email/set'), 'Deleting');
    await afterRemoval(e);
}

async function afterRemoval(e) {
    const i = emails.findIndex((x) => x.id === e.id);

    if (opened && opened.id === e.id) {
        closeMessage();
    }

    if (i >= 0) {
        cursor = i;
    }

    await loadMailboxes();
    await loadList(null);
    setCursor(cursor);
}

function move(mailboxId) {
    const e = target();
    const m = byId.get(mailboxId);

    if (!e || !m) {
        return undefined;
    }

    return run(async () => {
        await moveTo(e, mailboxId, 'Moving');
        showStatus('Moved to ' + mailboxLabel(m) + '.');
        $('message-list').focus();
    });
}

function remove() {
    const e = target();
    const trash = role('trash');

    if (!e) {
        return undefined;
    }

    return run(async () => {
        if (trash && current !== trash.id) {
            await moveTo(e, trash.id, 'Deleting');
            showStatus('Moved to ' + mailboxLabel(trash) + '.');
        } else {
            await destroy(e);
            showStatus('Deleted for good.');
        }
        $('message-list').focus();
    });
}


/* search */

function doSearch(ev) {
    ev.preventDefault();

    return run(async () => {
        search = $('search-input').value.trim();
        position = 0;
        closeMessage();
        $('search-clear').hidden = !search;
        await loadList();
        $('message-list').focus();
    });
}

function clearSearch() {
    $('search-input').value = '';

    return run(async () => {
        search = '';
        position = 0;
        $('search-clear').hidden = true;
        await loadList();
        $('message-list').focus();
    });
}


/* writing */

/* the identities to send from; a failure is told when sending */

async function loadIdentities() {
    identityError = null;

    try {
        if (!session.capabilities[SUBMISSION]) {
            throw new MailError('this server does not offer sending '
                + '(no JMAP submission).');
        }

        const get = await api([['Identity/get', { accountId: accountId,
            ids: null }, 'i']]);
        identities = get('i', 'Identity/get').list || [];
    } catch (e) {
        identities = [];
        identityError = e.message;
    }

    const opts = identities.map((i) => {
        const o = document.createElement('option');
        o.value = i.id;
        o.textContent = address(i);
        return o;
    });

    $('compose-from').replaceChildren(...opts);
}

function compose(fill) {
    const f = fill || {};

    replyTo = f.reply || null;
    $('compose-title').textContent = f.reply ? 'Reply' : 'New message';
    $('compose-to').value = f.to || '';
    $('compose-cc').value = f.cc || '';
    $('compose-subject').value = f.subject || '';
    $('compose-body').value = f.body || '';
    $('compose').showModal();
    (f.to ? $('compose-body') : $('compose-to')).focus();

    if (f.reply) {
        $('compose-body').setSelectionRange(0, 0);
    }
}

function closeCompose() {
    replyTo = null;
    if ($('compose').open) {
        $('compose').close();
    }
}

function reply() {
    const m = opened;

    if (!m) {
        return;
    }

    const to = Array.isArray(m.replyTo) && m.replyTo.length ? m.replyTo
        : m.from;
    const subject = m.subject || '';
    const quoted = bodyText(m, m.textBody).split('\n')
        .map((l) => '> ' + l).join('\n');
    const ids = Array.isArray(m.messageId) ? m.messageId : [];

    compose({
        to: addresses(to),
        subject: /^re:/i.test(subject) ? subject : 'Re: ' + subject,
        body: '\n\n' + (sender(m) || 'Someone') + ' wrote on '
            + formatDate(m.sentAt || m.receivedAt, true) + ':\n' + quoted
            + '\n',
        reply: ids.length ? { inReplyTo: ids,
            references: (Array.isArray(m.references) ? m.references : [])
                .concat(ids) } : null
    });
}

/* "Name <a@b>, c@d" into EmailAddress objects; a bad one thrown */

function parseAddresses(text) {
    const out = [];
    const parts = text.match(/("[^"]*"|[^,;])+/g) || [];

    for (const raw of parts) {
        const s = raw.trim();

        if (!s) {
            continue;
        }

        const m = s.match(/^(.*?)\s*<([^<>\s]+)>$/);
        const email = m ? m[2] : s;
        const name = m ? m[1].replace(/^"|"$/g, '').trim() : '';

        if (!/^[^\s@<>",;]+@[^\s@<>",;]+$/.test(email)) {
            throw new MailError('Not a mail address: ' + s);
        }

        out.push({ name: name || null, email: email });
    }

    return out;
}

async function send() {
    const drafts = role('drafts');
    const sent = role('sent');
    const id = identities.find((i) => i.id === $('compose-from').value)
        || identities[0];
    const to = parseAddresses($('compose-to').value);
    const cc = parseAddresses($('compose-cc').value);

    if (!to.length) {
        throw new MailError('Give at least one recipient.');
    }
    if (!id) {
        throw new MailError('Cannot send: ' + (identityError
            || 'the server gave no identity to send from.'));
    }
    if (!drafts) {
        throw new MailError('There is no Drafts mailbox to write in.');
    }

    const email = {
        mailboxIds: { [drafts.id]: true },
        keywords: { $draft: true, $seen: true },
        from: [{ name: id.name || null, email: id.email }],
        to: to,
        subject: $('compose-subject').value,
        textBody: [{ partId: 'body', type: 'text/plain' }],
        bodyValues: { body: { value: $('compose-body').value } }
    };

    if (cc.length) {
        email.cc = cc;
    }

    if (replyTo) {
        email.inReplyTo = replyTo.inReplyTo;
        email.references = replyTo.references;
    }

    /* patches: out of Drafts into Sent, no longer a draft */
    const after = { 'keywords/$draft': null };

    if (sent) {
        after['mailboxIds/' + drafts.id] = null;
        after['mailboxIds/' + sent.id] = true;
    }

    const get = await api([
        ['Email/set', { accountId: accountId, create: { draft: email } },
            'c'],
        ['EmailSubmission/set', { accountId: accountId,
            create: { send: { emailId: '#draft', identityId: id.id } },
            onSuccessUpdateEmail: { '#send': after } }, 's']
    ]);

    checkSet('Email/set', get('c', 'Email/set'), 'Saving the message');
    checkSet('EmailSubmission/set', get('s', 'EmailSubmission/set'),
        'Sending');

    closeCompose();
    showStatus('Sent.');

    try {
        checkSet('Email/set', get('s', 'Email/set'), 'Moving to Sent');
    } catch (e) {
        showStatus('Sent, but ' + e.message, true);
    }

    await loadMailboxes();
    if (byId.get(current) && [drafts.id, sent && sent.id].includes(current))
    {
        await loadList();
    }
}


/* the keyboard */

function typing(el) {
    return el && (el.isContentEditable
        || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName));
}

function onKey(ev) {
    if ($('app').hidden || $('compose').open || ev.ctrlKey || ev.metaKey
        || ev.altKey)
    {
        return;
    }

    const el = document.activeElement;

    if (ev.key === 'Escape') {
        if (el === $('search-input') && search) {
            clearSearch();
        } else if (opened) {
            closeMessage();
            $('message-list').focus();
        } else if (!$('status').hidden) {
            clearStatus();
        }
        return;
    }

    if (typing(el)) {
        return;
    }

    /* Enter on a button or a link is theirs */
    if ((ev.key === 'Enter' || ev.key === ' ')
        && el && el !== $('message-list') && el !== document.body
        && el.closest('button, a, select, iframe'))
    {
        return;
    }

    const handled = {
        j: () => setCursor(cursor + 1),
        ArrowDown: () => setCursor(cursor + 1),
        k: () => setCursor(cursor - 1),
        ArrowUp: () => setCursor(cursor - 1),
        Enter: () => openCursor(),
        o: () => openCursor(),
        r: () => reply(),
        c: () => compose(),
        '/': () => $('search-input').focus(),
        '#': () => remove(),
        Delete: () => remove(),
        u: () => toggleSeen()
    }[ev.key];

    if (!handled) {
        return;
    }

    /* the arrows are the list's only when it has the focus */
    if (ev.key.startsWith('Arrow') && el !== $('message-list')) {
        return;
    }

    ev.preventDefault();
    handled();
}

function openCursor() {
    const e = cursor >= 0 ? emails[cursor] : null;

    if (e) {
        run(() => openMessage(e.id));
    }
}


/* wiring */

function init() {
    $('login-form').addEventListener('submit', signIn);
    $('logout-button').addEventListener('click', signOut);
    $('status-close').addEventListener('click', clearStatus);
    $('search-form').addEventListener('submit', doSearch);
    $('search-clear').addEventListener('click', clearSearch);
    $('compose-button').addEventListener('click', () => compose());
    $('reply-button').addEventListener('click', reply);
    $('unread-button').addEventListener('click', toggleSeen);
    $('delete-button').addEventListener('click', remove);
    $('close-button').addEventListener('click', () => {
        closeMessage();
        $('message-list').focus();
    });
    $('move-select').addEventListener('change', (ev) => {
        const id = ev.target.value;
        ev.target.value = '';
        if (id) {
            move(id);
        }
    });
    $('page-newer').addEventListener('click', () => page(-1));
    $('page-older').addEventListener('click', () => page(1));
    $('show-html').addEventListener('click', () => {
        view = 'html';
        renderBody();
    });
    $('show-text').addEventListener('click', () => {
        view = 'text';
        renderBody();
    });
    $('compose-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        run(send);
    });
    $('compose-cancel').addEventListener('click', closeCompose);
    $('compose').addEventListener('close', () => { replyTo = null; });
    document.addEventListener('keydown', onKey);

    document.body.dataset.busy = '0';
    document.body.dataset.ready = '1';
    $('login-user').focus();
}

if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
} else {
    init();
}

})();
