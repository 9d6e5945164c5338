// The web mail page in a real browser: Debian's Chromium, headless, driven
// by puppeteer-core (t/node, "make node-deps").  Run by t/webmail.t with
// one argument, a JSON object:
//
//   base        the page's URL ("http://127.0.0.1:PORT/mail/")
//   user, pass  alice's login
//   remote      the "remote" address the HTML message points at
//               ("127.0.0.1:PORT"): no request may go there
//   dir         the test's directory: Chromium's profile, screenshots
//   unread      INBOX's unread count at the start
//   messages    INBOX's message count at the start
//   timeout     the whole run's bound, in seconds
//
// Prints one line per check, "ok - name" or "not ok - name: why", and
// "chromium PID", "screenshot PATH" and "# ..." lines; the first failed
// check ends the run (the page is then in an unknown state), with a
// screenshot of the page saved into dir.  Every wait is bounded.

import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'node', 'package.json'));
const puppeteer = require('puppeteer-core');

const cfg = JSON.parse(process.argv[2]);
const WAIT = 15000;

let browser = null;
let shots = 0;
let page = null;
const requests = [];

/* a request for the remote address, or one the message's script made */

const remote = (u) => u.includes(cfg.remote) || u.includes('script-ran');

function out(line) {
    process.stdout.write(line + '\n');
}

/* a promise, or an error after ms */

function bounded(promise, ms) {
    let timer;

    const late = new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error('no answer in ' + ms
            + 'ms')), ms);
    });

    promise.catch(() => {});

    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function screenshot(why) {
    if (!page) {
        return;
    }
    const file = path.join(cfg.dir, 'webmail-failure-' + (++shots) + '.png');
    try {
        await bounded(page.screenshot({ path: file }), 10000);
        out('screenshot ' + file);
    } catch (e) {
        out('# no screenshot: ' + e.message);
    }
    try {
        const status = await bounded(page.$eval('#status-text',
            (el) => el.textContent), 5000);
        if (status) {
            out('# the page\'s status area: ' + status);
        }
    } catch (e) {
        /* the page may be gone */
    }
    out('# failed: ' + why);
}

async function finish(code) {
    if (browser) {
        const proc = browser.process();
        await Promise.race([browser.close().catch(() => {}),
            new Promise((r) => setTimeout(r, 5000))]);
        if (proc && proc.exitCode === null) {
            /* Chromium and its helpers: its process group, by its PID */
            for (const pid of [-proc.pid, proc.pid]) {
                try {
                    process.kill(pid, 'SIGKILL');
                } catch (e) {
                    /* gone already */
                }
            }
        }
    }
    process.exit(code);
}

/* the whole run is bounded */

setTimeout(async () => {
    out('not ok - the run finished within ' + cfg.timeout + 's');
    await screenshot('the run timed out');
    await finish(2);
}, cfg.timeout * 1000).unref();

let failed = false;
let stopped = false;

/*
 * a check; a failure stops the run, unless the check knows how to put
 * the page back (recover), as the writing window does
 */

async function check(name, fn, recover) {
    if (stopped) {
        return;
    }
    try {
        await fn();
        out('ok - ' + name);
    } catch (e) {
        failed = true;
        out('not ok - ' + name + ': ' + String(e && e.message || e)
            .split('\n')[0]);
        await screenshot(name);
        try {
            stopped = !recover || !(await recover());
        } catch (e2) {
            stopped = true;
        }
    }
}

/* the writing window closed, the status dismissed */

async function closeCompose() {
    await page.evaluate(() => {
        const d = document.getElementById('compose');
        if (d.open) {
            d.close();
        }
        document.getElementById('status').hidden = true;
    });
    return true;
}

function assert(cond, what) {
    if (!cond) {
        throw new Error(what);
    }
}

/* the page's state, read in the page */

/* a wait ends early, and fails, when the page shows an error */

async function waitFor(fn, arg, allowError) {
    if (allowError) {
        return page.waitForFunction(fn, { timeout: WAIT, polling: 50 }, arg);
    }

    const ac = new AbortController();
    const want = page.waitForFunction(fn, { timeout: WAIT, polling: 50,
        signal: ac.signal }, arg);
    const error = page.waitForFunction(() => {
        const s = document.getElementById('status');
        return !s.hidden && s.classList.contains('error')
            && document.body.dataset.busy === '0' && s.textContent;
    }, { timeout: WAIT + 5000, polling: 100, signal: ac.signal })
        .then((h) => h.jsonValue())
        .then((t) => {
            throw new Error('the page shows an error: ' + t.trim());
        });

    want.catch(() => {});
    error.catch(() => {});

    try {
        return await Promise.race([want, error]);
    } finally {
        ac.abort();
    }
}

const idle = () => waitFor(() => document.body.dataset.busy === '0');

const text = (sel) => page.$eval(sel, (el) => el.textContent);

const rows = () => page.$$eval('#message-list [role="option"]',
    (els) => els.map((el) => ({ id: el.dataset.id,
        subject: el.querySelector('.row-subject').textContent,
        unread: el.classList.contains('unread'),
        selected: el.getAttribute('aria-selected') === 'true',
        weight: getComputedStyle(el.querySelector('.row-subject'))
            .fontWeight })));

const mailbox = (role) => page.$eval(
    '#mailbox-list button[data-role="' + role + '"]', (b) => ({
        id: b.dataset.id,
        name: b.querySelector('.mailbox-name').textContent,
        count: Number((b.querySelector('.count') || {}).textContent || 0),
        current: b.getAttribute('aria-current') === 'true' }));

const unreadIs = (n) => waitFor((n) => {
    const b = document.querySelector(
        '#mailbox-list button[data-role="inbox"]');
    const c = b && b.querySelector('.count');
    return b && Number(c ? c.textContent : 0) === n;
}, n);

async function openBySubject(subject) {
    const list = await rows();
    const i = list.findIndex((r) => r.subject.includes(subject));
    assert(i >= 0, 'no row "' + subject + '" in '
        + JSON.stringify(list.map((r) => r.subject)));
    await page.click('#msg-' + i);
    await waitFor((s) => !document.getElementById('message').hidden
        && document.getElementById('message-subject').textContent
            .includes(s) && document.body.dataset.busy === '0', subject);
}

async function selectMailbox(role) {
    await page.click('#mailbox-list button[data-role="' + role + '"]');
    await waitFor((r) => {
        const b = document.querySelector(
            '#mailbox-list button[data-role="' + r + '"]');
        return b && b.getAttribute('aria-current') === 'true'
            && document.body.dataset.busy === '0';
    }, role);
}

async function key(k) {
    await page.keyboard.press(k);
}

/* Chromium started, a page with every request logged */

async function main() {
    browser = await puppeteer.launch({
        executablePath: '/usr/bin/chromium',
        headless: true,
        userDataDir: path.join(cfg.dir, 'chromium'),
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
            '--no-first-run', '--no-default-browser-check',
            '--disable-extensions', '--disable-background-networking',
            '--disable-sync', '--metrics-recording-only',
            '--window-size=1400,900'],
        defaultViewport: { width: 1400, height: 900 },
        protocolTimeout: WAIT * 2,
        timeout: WAIT * 2
    });

    out('chromium ' + browser.process().pid);

    page = await browser.newPage();
    page.setDefaultTimeout(WAIT);

    /* every request any frame of the page makes, and what the page logs */

    page.on('request', (r) => requests.push(r.url()));
    page.on('console', (m) => out('# console ' + m.type() + ': '
        + m.text().split('\n')[0]));
    page.on('pageerror', (e) => out('# page error: ' + e.message));
}


/* the page, signing in, the list */

async function signIn() {
    await check('the page loads', async () => {
        const res = await page.goto(cfg.base, { waitUntil: 'load' });
        assert(res && res.status() === 200, 'status ' + (res && res.status()));
        await waitFor(() => document.body.dataset.ready === '1');
        assert(await page.$eval('#login', (el) => !el.hidden),
            'the sign-in form is not shown');
    });

    await check('a wrong password: an error in the status area', async () => {
        await page.type('#login-user', cfg.user);
        await page.type('#login-password', 'wrong');
        await page.click('#login-submit');
        await waitFor(() => !document.getElementById('status').hidden
            && document.body.dataset.busy === '0', undefined, true);
        const s = await text('#status-text');
        assert(/refused/i.test(s), 'status: ' + s);
        assert(await page.$eval('#status', (el) =>
            el.classList.contains('error') && el.getAttribute('role')
                === 'alert'), 'not shown as an error');
        assert(await page.$eval('#app', (el) => el.hidden),
            'the mail is shown');
    });

    await check('sign in: INBOX shown with its unread count', async () => {
        await page.$eval('#login-user', (el) => { el.value = ''; });
        await page.type('#login-user', cfg.user);
        await page.type('#login-password', cfg.pass);
        await page.keyboard.press('Enter');
        await waitFor(() => !document.getElementById('app').hidden
            && document.querySelectorAll('#message-list [role="option"]')
                .length > 0 && document.body.dataset.busy === '0');
        const inbox = await mailbox('inbox');
        assert(inbox.current, 'INBOX is not the one shown');
        assert(inbox.count === cfg.unread, 'unread count ' + inbox.count
            + ', not ' + cfg.unread);
        const names = await page.$$eval('#mailbox-list .mailbox-name',
            (els) => els.map((e) => e.textContent));
        for (const n of ['Drafts', 'Sent', 'Archive', 'Trash']) {
            assert(names.includes(n), 'no mailbox ' + n + ' in '
                + names.join(', '));
        }
        assert(await page.$eval('#user-name', (e) => e.textContent)
            === cfg.user, 'the user is not shown');
    });

    await check('the message list: every message, unread in bold',
        async () => {
            const list = await rows();
            assert(list.length === cfg.messages, list.length
                + ' rows, not ' + cfg.messages);
            assert(list.filter((r) => r.unread).length === cfg.unread,
                'unread rows');
            assert(list.every((r) => !r.unread || Number(r.weight) >= 700),
                'an unread row not bold');
            const range = await text('#list-range');
            assert(range.includes('of ' + cfg.messages), 'range: ' + range);
            const roles = await page.$eval('#message-list', (el) =>
                el.getAttribute('role'));
            assert(roles === 'listbox', 'the list has no listbox role');
        });
}


/* reading: HTML in its frame, text, attachments, the keyboard */

async function reading() {
    await check('the HTML message: shown in a sandboxed frame', async () => {
        await openBySubject('HTML message');
        await waitFor(() => !document.getElementById('message-html').hidden);
        const sandbox = await page.$eval('#message-html',
            (f) => f.getAttribute('sandbox'));
        assert(sandbox !== null, 'no sandbox attribute');
        assert(!/allow-scripts|allow-same-origin/.test(sandbox),
            'sandbox: ' + sandbox);
        const srcdoc = await page.$eval('#message-html', (f) => f.srcdoc);
        assert(/http-equiv="Content-Security-Policy"/.test(srcdoc)
            && /img-src data: cid:/.test(srcdoc), 'no CSP in the frame');
        assert(!/<script/i.test(srcdoc), 'a script left in the frame');
        assert(await page.$eval('#remote-notice', (el) => !el.hidden
            && /remote content blocked/i.test(el.textContent)),
            'no "remote content blocked" notice');
    });

    await check('the HTML message: no script ran, nothing remote loaded',
        async () => {
            /* the frame's text, and the marker its script would set */
            await new Promise((r) => setTimeout(r, 1000));
            const frame = page.frames().find((f) => f !== page.mainFrame());
            assert(frame, 'no frame');
            let inside = null;
            try {
                inside = await frame.evaluate(() => ({
                    text: document.body.textContent,
                    ran: document.body.getAttribute('data-ran'),
                    title: document.title }));
            } catch (e) {
                out('# the frame cannot be read: ' + e.message);
            }
            if (inside) {
                assert(inside.text.includes('Hello in HTML'),
                    'frame text: ' + inside.text);
                assert(inside.ran === null, 'the script ran');
            }
            assert(await page.evaluate(() => document.title)
                .then((t) => !/pwned/.test(t)), 'the page title changed');
            const bad = requests.filter(remote);
            assert(bad.length === 0, 'requests: ' + bad.join(' '));
        });

    await check('opened: marked read, the unread count down', async () => {
        await unreadIs(cfg.unread - 1);
        const list = await rows();
        const r = list.find((x) => x.subject.includes('HTML message'));
        assert(r && !r.unread, 'the row is still unread');
    });

    await check('u: marked unread again', async () => {
        await page.focus('#message-list');
        await key('u');
        await unreadIs(cfg.unread);
        await idle();
        const list = await rows();
        const r = list.find((x) => x.subject.includes('HTML message'));
        assert(r && r.unread, 'the row is not unread');
        assert(await text('#unread-button') === 'Mark read',
            'the button');
    });

    await check('a text message: shown as text', async () => {
        await openBySubject('Plain words');
        assert(await page.$eval('#message-html', (f) => f.hidden),
            'the frame is shown');
        const body = await text('#message-text');
        assert(body.includes('<b>not bold</b>'), 'text: ' + body);
        assert(await page.$eval('#message-text', (el) =>
            el.querySelector('b') === null), 'the text became HTML');
    });

    await check('attachments: a download link that works', async () => {
        await openBySubject('With attachment');
        const links = await page.$$eval('#attachment-list a', (els) =>
            els.map((a) => ({ text: a.textContent, href: a.href })));
        assert(links.length === 1 && links[0].text.startsWith('notes.txt'),
            'links: ' + JSON.stringify(links));
        assert(/\/jmap\/download\/[^/]+\/[^/]+\/notes\.txt\?type=text%2Fplain$/
            .test(links[0].href), 'href: ' + links[0].href);
        const got = await page.evaluate(async (url, auth) => {
            const r = await fetch(url, { headers: { Authorization: auth } });
            return r.status + ' ' + await r.text();
        }, links[0].href, 'Basic ' + Buffer.from(cfg.user + ':' + cfg.pass)
            .toString('base64'));
        assert(/^200 The notes' text\./.test(got), 'download: ' + got);
    });

    await check('keyboard: Escape closes, j/k move, Enter opens', async () => {
        await page.focus('#message-list');
        await key('Escape');
        await waitFor(() => document.getElementById('message').hidden);
        for (let i = 0; i < cfg.messages; i++) {
            await key('k');
        }
        const start = (await rows()).findIndex((r) => r.selected);
        assert(start === 0, 'k did not reach the top: ' + start);
        await key('j');
        await key('j');
        await key('k');
        const list = await rows();
        const sel = list.findIndex((r) => r.selected);
        assert(sel === start + 1, 'selected ' + sel + ', not '
            + (start + 1));
        await key('Enter');
        await waitFor((s) => !document.getElementById('message').hidden
            && document.getElementById('message-subject').textContent === s
            && document.body.dataset.busy === '0', list[sel].subject);
        await key('o');
        await idle();
    });

    await check('Tab reaches the controls, with a visible focus', async () => {
        await page.focus('#compose-button');
        const seen = new Set();
        for (let i = 0; i < 12; i++) {
            await key('Tab');
            const f = await page.evaluate(() => {
                const el = document.activeElement;
                const s = getComputedStyle(el);
                return { id: el.id || el.className,
                    outline: s.outlineStyle !== 'none'
                        && parseFloat(s.outlineWidth) > 0 };
            });
            assert(f.outline, 'no visible focus on ' + f.id);
            seen.add(f.id);
        }
        for (const id of ['search-input', 'search-button', 'logout-button']) {
            assert(seen.has(id), id + ' not reached by Tab: '
                + [...seen].join(' '));
        }
    });
}


/* changing: pages, moves, deletes, search */

async function changing() {
    await check('page by page: 50 messages, then the rest', async () => {
        await page.evaluate(() => {
            for (const b of document.querySelectorAll('#mailbox-list button')) {
                if (b.querySelector('.mailbox-name').textContent === 'Lists') {
                    b.click();
                }
            }
        });
        const range = (r) => waitFor((r) => document.getElementById(
            'list-range').textContent === r
            && document.body.dataset.busy === '0', r);
        await range('1\u201350 of ' + cfg.lists);
        assert((await rows()).length === 50, 'not 50 rows');
        assert(await page.$eval('#page-newer', (b) => b.disabled),
            'Newer enabled on the first page');
        await page.click('#page-older');
        await range('51\u2013' + cfg.lists + ' of ' + cfg.lists);
        assert((await rows()).length === cfg.lists - 50, 'rows of page 2');
        assert(await page.$eval('#page-older', (b) => b.disabled),
            'Older enabled on the last page');
        await page.click('#page-newer');
        await range('1\u201350 of ' + cfg.lists);
    }, async () => {
        await page.evaluate(() => {
            document.getElementById('status').hidden = true;
        });
        await selectMailbox('inbox');
        return true;
    });

    await check('back to INBOX', () => selectMailbox('inbox'));

    await check('move a message to Archive', async () => {
        await openBySubject('Move me');
        const archive = await mailbox('archive');
        await page.select('#move-select', archive.id);
        await waitFor(() => document.getElementById('message').hidden
            && document.body.dataset.busy === '0');
        const list = await rows();
        assert(!list.some((r) => r.subject.includes('Move me')),
            'still in INBOX');
        await selectMailbox('archive');
        const there = await rows();
        assert(there.some((r) => r.subject.includes('Move me')),
            'not in Archive: ' + JSON.stringify(there));
        await selectMailbox('inbox');
    });

    await check('delete: to Trash', async () => {
        await openBySubject('Delete me');
        await page.focus('#message-list');
        await key('#');
        await waitFor(() => document.getElementById('message').hidden
            && document.body.dataset.busy === '0');
        assert(!(await rows()).some((r) => r.subject.includes('Delete me')),
            'still in INBOX');
        await selectMailbox('trash');
        assert((await rows()).some((r) => r.subject.includes('Delete me')),
            'not in Trash');
        await selectMailbox('inbox');
    });

    await check('search: / then a word', async () => {
        await page.focus('#message-list');
        await key('/');
        assert(await page.evaluate(() => document.activeElement.id)
            === 'search-input', '/ did not focus the search');
        await page.keyboard.type('needle');
        await key('Enter');
        await waitFor(() => /needle/.test(document.getElementById(
            'list-title').textContent) && document.body.dataset.busy === '0');
        const list = await rows();
        assert(list.length === 1 && list[0].subject.includes('haystack'),
            'found: ' + JSON.stringify(list.map((r) => r.subject)));
        await page.click('#search-clear');
        await waitFor((n) => document.querySelectorAll(
            '#message-list [role="option"]').length === n
            && document.body.dataset.busy === '0', cfg.messages - 2);
    });
}


/* writing, then signing out, a narrow screen */

async function writing() {
    await check('write and send a message to bob', async () => {
        await page.focus('#message-list');
        await key('c');
        await waitFor(() => document.getElementById('compose').open);
        await page.type('#compose-to', 'bob@example.com');
        await page.type('#compose-subject', 'From the web page');
        await page.type('#compose-body', 'Sent by the browser.\nBye.');
        await page.click('#compose-send');
        await waitFor(() => (!document.getElementById('compose').open
            || !document.getElementById('status').hidden)
            && document.body.dataset.busy === '0');
        const s = await text('#status-text');
        assert(await page.$eval('#compose', (d) => !d.open),
            'not sent: ' + s);
        assert(/^Sent\.$/.test(s), 'status: ' + s);
    }, closeCompose);

    await check('reply to bob: To, Re:, then sent', async () => {
        await openBySubject('Lunch?');
        await page.focus('#message-list');
        await key('r');
        await waitFor(() => document.getElementById('compose').open);
        const to = await page.$eval('#compose-to', (e) => e.value);
        const subject = await page.$eval('#compose-subject', (e) => e.value);
        assert(/bob@example\.com/.test(to), 'to: ' + to);
        assert(subject === 'Re: Lunch?', 'subject: ' + subject);
        await page.type('#compose-body', 'Yes, at noon.');
        await page.click('#compose-send');
        await waitFor(() => (!document.getElementById('compose').open
            || !document.getElementById('status').hidden)
            && document.body.dataset.busy === '0');
        const s = await text('#status-text');
        assert(await page.$eval('#compose', (d) => !d.open),
            'not sent: ' + s);
    }, closeCompose);

    await check('no request left for the remote address', async () => {
        const bad = requests.filter(remote);
        assert(bad.length === 0, 'requests: ' + bad.join(' '));
        const other = requests.filter((u) => !u.startsWith(
            new URL(cfg.base).origin) && !/^(data|blob|about):/.test(u));
        assert(other.length === 0, 'other requests: ' + other.join(' '));
    });

    await check('sign out: the sign-in form, nothing stored', async () => {
        await page.click('#logout-button');
        await waitFor(() => !document.getElementById('login').hidden
            && document.getElementById('app').hidden);
        const stored = await page.evaluate(() => localStorage.length
            + sessionStorage.length + document.cookie.length);
        assert(stored === 0, 'stored: ' + stored);
        const rowsLeft = await page.$$eval('#message-list li',
            (els) => els.length);
        assert(rowsLeft === 0, 'rows left after sign-out');
    });

    await check('narrow screen: the panes stacked', async () => {
        await page.setViewport({ width: 600, height: 900 });
        await page.$eval('#login-user', (el) => { el.value = ''; });
        await page.type('#login-user', cfg.user);
        await page.type('#login-password', cfg.pass);
        await page.click('#login-submit');
        await waitFor(() => !document.getElementById('app').hidden
            && document.body.dataset.busy === '0');
        const boxes = await page.evaluate(() => ['.mailboxes', '.messages',
            '.reader'].map((s) => document.querySelector(s)
            .getBoundingClientRect().top));
        assert(boxes[0] < boxes[1] && boxes[1] < boxes[2],
            'not stacked: ' + boxes.join(' '));
    });
}


async function all() {
    await main();
    await signIn();
    await reading();
    await changing();
    await writing();
    out('# requests: ' + requests.length);
}

all().then(() => finish(failed ? 1 : 0), async (e) => {
    out('not ok - the browser ran: ' + String(e && e.message || e)
        .split('\n')[0]);
    await screenshot(String(e));
    await finish(1);
});
