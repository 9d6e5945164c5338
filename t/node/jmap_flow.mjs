// The seed's flow in JMAP terms, with a JMAP client library (jmap-jam)
// against the module's endpoint, for t/jmap_flow.t:
//
//   node jmap_flow.mjs '{"session": URL, "token": JWT, "word": W,
//                        "to": ADDRESS}'
//
// finds the message with W in its subject in the INBOX, reads it, moves
// it to a new mailbox "Projects", finds it again by searching for W,
// writes a reply as a draft and sends it with EmailSubmission/set (the
// draft moved to Sent), destroys the original, and prints one JSON
// object of what it saw on its last line.  Any error is printed and the
// exit status is 1.

import JamClient from "jmap-jam";

const MAIL = "urn:ietf:params:jmap:mail";
const SUBMISSION = "urn:ietf:params:jmap:submission";

const arg = JSON.parse(process.argv[2]);
const out = { steps: [] };

function step(name, data) {
  out.steps.push(name);
  if (data !== undefined) {
    out[name] = data;
  }
}

// jam answers [result, meta]; a method error is thrown or returned as
// an object with "type": either way it stops the flow

async function call(jam, method, args, using) {
  const [result] = await jam.request([method, args],
                                     using ? { using } : undefined);
  if (result && result.type && !result.accountId) {
    throw new Error(`${method}: ${result.type} ${result.description || ""}`);
  }
  return result;
}

async function main() {
  const jam = new JamClient({ sessionUrl: arg.session,
                              bearerToken: arg.token });

  const session = await jam.session;
  step("session", { username: session.username,
                    capabilities: Object.keys(session.capabilities).sort() });

  const accountId = await jam.getPrimaryAccount();

  // the mailboxes and their roles

  const boxes = await call(jam, "Mailbox/get", { accountId, ids: null });
  const role = (r) => boxes.list.find((m) => m.role === r);
  const inbox = role("inbox");
  const drafts = role("drafts");
  const sent = role("sent");

  step("mailboxes", { inbox: inbox && inbox.unreadEmails,
                      drafts: !!drafts, sent: !!sent });

  // the INBOX, newest first, and the message with the word: one request,
  // the ids of the query referenced by the get

  const [res] = await jam.requestMany((t) => {
    const q = t.Email.query({ accountId, filter: { inMailbox: inbox.id },
                              sort: [{ property: "receivedAt",
                                       isAscending: false }],
                              limit: 50, calculateTotal: true });
    const g = t.Email.get({ accountId, ids: q.$ref("/ids"),
                            properties: ["id", "subject", "from", "messageId",
                                         "keywords", "textBody", "bodyValues",
                                         "preview"],
                            fetchTextBodyValues: true });
    return { q, g };
  });

  const msg = res.g.list.find((e) => e.subject.includes(arg.word));
  if (!msg) {
    throw new Error(`no message with "${arg.word}" in the INBOX`);
  }

  step("read", { total: res.q.total, subject: msg.subject,
                 from: msg.from[0].email, seen: !!msg.keywords.$seen,
                 body: msg.bodyValues[msg.textBody[0].partId].value,
                 preview: msg.preview });

  // a new mailbox, and the message moved into it

  const made = await call(jam, "Mailbox/set",
                          { accountId, create: { p: { name: "Projects" } } });
  const projects = made.created.p.id;

  const moved = await call(jam, "Email/set",
                           { accountId,
                             update: { [msg.id]: {
                               mailboxIds: { [projects]: true },
                               "keywords/$seen": true } } });
  if (!moved.updated || !(msg.id in moved.updated)) {
    throw new Error(`not moved: ${JSON.stringify(moved.notUpdated)}`);
  }

  // found again by a search over every mailbox

  const [found] = await jam.requestMany((t) => {
    const q = t.Email.query({ accountId, filter: { text: arg.word } });
    const g = t.Email.get({ accountId, ids: q.$ref("/ids"),
                            properties: ["id", "mailboxIds", "keywords",
                                         "subject"] });
    return { q, g };
  });

  const hit = found.g.list.find((e) => e.subject === msg.subject);
  step("search", { hits: found.q.ids.length,
                   inProjects: !!(hit && hit.mailboxIds[projects]),
                   seen: !!(hit && hit.keywords.$seen) });

  // the reply: a draft, sent, moved to Sent

  const [ident] = await jam.request(["Identity/get", { accountId }],
                                    { using: [SUBMISSION] });
  const identity = ident.list[0];

  const [sentRes] = await jam.requestMany((t) => {
    const e = t.Email.set({
      accountId,
      create: { draft: {
        mailboxIds: { [drafts.id]: true },
        keywords: { $draft: true, $seen: true },
        from: [{ name: "Alice", email: identity.email }],
        to: [{ email: arg.to }],
        subject: `Re: ${msg.subject}`,
        inReplyTo: msg.messageId,
        references: msg.messageId,
        textBody: [{ partId: "t", type: "text/plain" }],
        bodyValues: { t: { value: `Got it: ${arg.word}.\n` } } } } });
    const s = t.EmailSubmission.set({
      accountId,
      create: { sub: { identityId: identity.id, emailId: "#draft" } },
      onSuccessUpdateEmail: { "#sub": {
        [`mailboxIds/${drafts.id}`]: null,
        [`mailboxIds/${sent.id}`]: true,
        "keywords/$draft": null } } });
    return { e, s };
  }, { using: [MAIL, SUBMISSION] });

  if (!sentRes.e.created || !sentRes.e.created.draft) {
    throw new Error(`draft: ${JSON.stringify(sentRes.e.notCreated)}`);
  }
  // the submission's answer and the implicit Email/set of
  // onSuccessUpdateEmail share the call's id (RFC 8621, 7.5); jam keeps
  // the last answer of an id, the implicit Email/set: it names the draft
  // as updated once the submission was created

  const draftId = sentRes.e.created.draft.id;
  const s = sentRes.s;

  if (!(s.created && s.created.sub)
      && !(s.updated && draftId in s.updated)) {
    throw new Error(`submission: ${JSON.stringify(s)}`);
  }

  step("sent", { identity: identity.email });

  // the original destroyed; Projects is empty

  const gone = await call(jam, "Email/set",
                          { accountId, destroy: [hit.id] });
  const left = await call(jam, "Email/query",
                          { accountId, filter: { inMailbox: projects } });

  step("destroyed", { destroyed: gone.destroyed.length,
                      left: left.ids.length });
}

main().then(() => {
  console.log(JSON.stringify(out));
}, (err) => {
  out.error = String(err && err.stack || err);
  console.log(JSON.stringify(out));
  process.exit(1);
});
