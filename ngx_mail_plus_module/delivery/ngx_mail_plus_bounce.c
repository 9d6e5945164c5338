
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_delivery.h"


/*
 * Delivery status notifications (RFC 3464): the recipients of a message
 * that failed, are delayed or, when they asked for it, were delivered are
 * reported to its envelope sender in a multipart/report with a
 * message/delivery-status part and the original header section, or with
 * RET=FULL in a failure report the whole original message.  The report
 * goes into the same queue with the null sender, so it is itself never
 * bounced.
 */


#define NGX_MAIL_PLUS_BOUNCE_HEADERS  (64 * 1024)
#define NGX_MAIL_PLUS_BOUNCE_CHUNK    (16 * 1024)


/*
 * the report's parts, as formats: a buffer is sized from the length of
 * each format (its specifiers, "%V" and the like, count for at least as
 * much as the literal text around them) plus the length of each field
 */

#define NGX_MAIL_PLUS_BOUNCE_HEAD                                             \
    "From: Mail Delivery System <MAILER-DAEMON@%V>" CRLF                      \
    "To: <%V>" CRLF                                                           \
    "Subject: %s" CRLF                                                        \
    "Date: %V" CRLF                                                           \
    "Message-ID: <%s.bounce@%V>" CRLF                                         \
    "Auto-Submitted: auto-replied" CRLF                                       \
    "MIME-Version: 1.0" CRLF                                                  \
    "Content-Type: multipart/report; "                                        \
    "report-type=delivery-status;" CRLF                                       \
    "\tboundary=\"%s/%V\"" CRLF                                               \
    CRLF                                                                      \
    "This is a MIME-encapsulated message." CRLF                               \
    CRLF                                                                      \
    "--%s/%V" CRLF                                                            \
    "Content-Type: text/plain; charset=us-ascii" CRLF                         \
    CRLF                                                                      \
    "This is the mail system at host %V." CRLF                                \
    CRLF                                                                      \
    "%s" CRLF                                                                 \
    CRLF

#define NGX_MAIL_PLUS_BOUNCE_LINE     "<%V>: %V" CRLF

#define NGX_MAIL_PLUS_BOUNCE_CUT                                              \
    CRLF "The message is larger than %uz bytes: "                             \
    "only its header section is returned." CRLF

#define NGX_MAIL_PLUS_BOUNCE_STATUS                                           \
    CRLF "--%s/%V" CRLF                                                       \
    "Content-Type: message/delivery-status" CRLF                              \
    CRLF                                                                      \
    "Reporting-MTA: dns; %V" CRLF                                             \
    "X-Mail-Plus-Queue-ID: %s" CRLF

#define NGX_MAIL_PLUS_BOUNCE_ENVID    "Original-Envelope-Id: %V" CRLF
#define NGX_MAIL_PLUS_BOUNCE_ARRIVAL  "Arrival-Date: %V" CRLF
#define NGX_MAIL_PLUS_BOUNCE_ORCPT    CRLF "Original-Recipient: %V"

#define NGX_MAIL_PLUS_BOUNCE_RCPT                                             \
    CRLF "Final-Recipient: rfc822; %V" CRLF                                   \
    "Action: %s" CRLF                                                         \
    "Status: %V" CRLF

#define NGX_MAIL_PLUS_BOUNCE_MTA      "Remote-MTA: dns; %V" CRLF
#define NGX_MAIL_PLUS_BOUNCE_DIAG     "Diagnostic-Code: %s; %V" CRLF

#define NGX_MAIL_PLUS_BOUNCE_ORIGINAL                                         \
    CRLF "--%s/%V" CRLF                                                       \
    "Content-Type: %s" CRLF                                                   \
    CRLF

#define NGX_MAIL_PLUS_BOUNCE_TAIL     CRLF "--%s/%V--" CRLF

#define NGX_MAIL_PLUS_BOUNCE_DOUBLE                                           \
    "From: Mail Delivery System <MAILER-DAEMON@%V>" CRLF                      \
    "To: <%V>" CRLF                                                           \
    "Subject: Undeliverable mail from <> (double bounce)" CRLF                \
    "Date: %V" CRLF                                                           \
    "Message-ID: <%s.double@%V>" CRLF                                         \
    "Auto-Submitted: auto-replied" CRLF                                       \
    "MIME-Version: 1.0" CRLF                                                  \
    "Content-Type: text/plain; charset=us-ascii" CRLF                         \
    CRLF                                                                      \
    "This is the mail system at host %V." CRLF                                \
    CRLF                                                                      \
    "A message with the null sender <> (a delivery status "                   \
    "notification or" CRLF                                                    \
    "another automatic message) could not be delivered, and "                 \
    "there is no" CRLF                                                        \
    "sender to return it to.  It has been removed from the "                  \
    "queue." CRLF                                                             \
    CRLF                                                                      \
    "Queue ID: %s" CRLF                                                       \
    CRLF


typedef struct {
    ngx_uint_t                       state;    /* of the recipients */
    ngx_uint_t                       notify;   /* NOTIFY= that asks for it */
    char                            *subject;
    char                            *text;
    char                            *log;
} ngx_mail_plus_bounce_type_t;


/* a report being written */

typedef struct {
    ngx_mail_plus_delivery_conf_t   *dcf;
    ngx_mail_plus_dmsg_t            *msg;     /* the message reported on */
    ngx_mail_plus_queue_msg_t       *m;       /* the report */
    ngx_uint_t                       type;    /* NGX_MAIL_PLUS_DSN_* */
    ngx_mail_plus_bounce_type_t     *bt;
    ngx_str_t                        host;
    ngx_str_t                        date;    /* now */
    ngx_str_t                        arrival;
    unsigned                         full:1;  /* the whole original */
    unsigned                         cut:1;   /* too large to be whole */
} ngx_mail_plus_bounce_t;


typedef struct {
    ngx_mail_plus_queue_msg_t       *m;
    ngx_str_t                        tail;     /* the last boundary */
} ngx_mail_plus_bounce_copy_t;


static ngx_uint_t ngx_mail_plus_bounce_count(ngx_mail_plus_dmsg_t *msg,
    ngx_uint_t type);
static ngx_mail_plus_queue_msg_t *ngx_mail_plus_bounce_open(
    ngx_mail_plus_dmsg_t *msg, ngx_str_t *to, ngx_str_t *host,
    ngx_uint_t body, ngx_uint_t smtputf8);
static size_t ngx_mail_plus_bounce_size(ngx_mail_plus_bounce_t *b);
static u_char *ngx_mail_plus_bounce_text(ngx_mail_plus_bounce_t *b,
    u_char *p, u_char *last);
static u_char *ngx_mail_plus_bounce_status(ngx_mail_plus_bounce_t *b,
    u_char *p, u_char *last);
static ngx_int_t ngx_mail_plus_bounce_original(ngx_mail_plus_bounce_t *b);
static void ngx_mail_plus_bounce_copied(void *data);
static const char *ngx_mail_plus_bounce_action(ngx_mail_plus_rcpt_t *rcpt,
    ngx_uint_t type);
static void ngx_mail_plus_bounce_noticed(ngx_mail_plus_queue_msg_t *m);
static ngx_str_t *ngx_mail_plus_bounce_reply(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt);


/* by NGX_MAIL_PLUS_DSN_FAILED, _DELAYED, _SUCCESS */

static ngx_mail_plus_bounce_type_t  ngx_mail_plus_bounce_types[] = {

    { NGX_MAIL_PLUS_RCPT_FAILED, NGX_MAIL_PLUS_NOTIFY_FAILURE,
      "Undelivered Mail Returned to Sender",
      "Your message could not be delivered to one or more recipients.",
      "non-delivery" },

    { NGX_MAIL_PLUS_RCPT_DEFERRED, NGX_MAIL_PLUS_NOTIFY_DELAY,
      "Delayed Mail (still being retried)",
      "Your message could not be delivered yet to one or more recipients; "
      "it will be retried.",
      "delay" },

    { NGX_MAIL_PLUS_RCPT_SENT, NGX_MAIL_PLUS_NOTIFY_SUCCESS,
      "Successful Mail Delivery Report",
      "Your message was delivered to the mailboxes of the recipients "
      "below, or passed on" CRLF "to a next hop that does not report "
      "deliveries itself.",
      "success" }
};


/*
 * a report of the type to the sender of the message: NGX_AGAIN, it is
 * being queued and the handler is called; NGX_DECLINED, no recipient's
 * NOTIFY= asks for it
 */

ngx_int_t
ngx_mail_plus_bounce(ngx_mail_plus_delivery_conf_t *dcf,
    ngx_mail_plus_dmsg_t *msg, ngx_uint_t type,
    ngx_mail_plus_queue_handler_pt handler, void *data)
{
    u_char                  *p, *buf, *last;
    size_t                   len;
    ngx_mail_plus_bounce_t   b;
    u_char                   date[NGX_MAIL_PLUS_DATE_LEN];
    u_char                   arrival[NGX_MAIL_PLUS_DATE_LEN];

    /* RFC 3461 4.1: only the recipients whose NOTIFY= asks for it */

    if (ngx_mail_plus_bounce_count(msg, type) == 0) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                       "delivery %s: no %s notification asked for",
                       msg->id, ngx_mail_plus_bounce_types[type].log);
        return NGX_DECLINED;
    }

    ngx_memzero(&b, sizeof(ngx_mail_plus_bounce_t));

    b.dcf = dcf;
    b.msg = msg;
    b.type = type;
    b.bt = &ngx_mail_plus_bounce_types[type];
    b.host = dcf->helo_name;

    b.date.data = date;
    b.date.len = ngx_mail_plus_date(date, ngx_time()) - date;
    b.arrival.data = arrival;
    b.arrival.len = ngx_mail_plus_date(arrival, msg->arrival) - arrival;

    /*
     * RFC 3461 4.3: the whole message only in a failure report, and only
     * up to queue_bounce_size_limit; else its header section
     */

    b.full = (type == NGX_MAIL_PLUS_DSN_FAILED && msg->ret.len == 4
              && ngx_strncasecmp(msg->ret.data, (u_char *) "FULL", 4) == 0);

    if (b.full && msg->size > (off_t) dcf->bounce_size_limit) {
        b.full = 0;
        b.cut = 1;
    }

    b.m = ngx_mail_plus_bounce_open(msg, &msg->sender, &b.host,
                                    msg->body_type, msg->smtputf8);
    if (b.m == NULL) {
        return NGX_ERROR;
    }

    len = ngx_mail_plus_bounce_size(&b);

    buf = ngx_pnalloc(b.m->pool, len);
    if (buf == NULL) {
        goto failed;
    }

    last = buf + len;

    p = ngx_mail_plus_bounce_text(&b, buf, last);
    p = ngx_mail_plus_bounce_status(&b, p, last);

    p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_ORIGINAL,
                     b.m->id, &b.host,
                     b.full ? "message/rfc822" : "text/rfc822-headers");

    ngx_log_debug5(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: %s notification %s, %uz of %uz bytes",
                   msg->id, b.bt->log, b.m->id, (size_t) (p - buf), len);

    if (ngx_mail_plus_queue_write(b.m, buf, p - buf) != NGX_OK) {
        goto failed;
    }

    ngx_log_error(NGX_LOG_INFO, msg->log, 0,
                  "delivery %s: sender %s notification: %s",
                  msg->id, b.bt->log, b.m->id);

    b.m->handler = handler;
    b.m->data = data;

    if (ngx_mail_plus_bounce_original(&b) == NGX_AGAIN) {
        return NGX_AGAIN;
    }

failed:

    ngx_mail_plus_queue_abort(b.m);

    return NGX_ERROR;
}


/* the recipients a report of the type tells of */

static ngx_uint_t
ngx_mail_plus_bounce_count(ngx_mail_plus_dmsg_t *msg, ngx_uint_t type)
{
    ngx_uint_t             i, n;
    ngx_mail_plus_rcpt_t  *rcpt;

    rcpt = msg->rcpts.elts;
    n = 0;

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (ngx_mail_plus_bounce_action(&rcpt[i], type)) {
            n++;
        }
    }

    return n;
}


/* a report goes into the queue from <>, to one recipient */

static ngx_mail_plus_queue_msg_t *
ngx_mail_plus_bounce_open(ngx_mail_plus_dmsg_t *msg, ngx_str_t *to,
    ngx_str_t *host, ngx_uint_t body, ngx_uint_t smtputf8)
{
    ngx_str_t                       *rcpt;
    ngx_array_t                      rcpts;
    ngx_mail_plus_queue_envelope_t   env;

    if (ngx_array_init(&rcpts, msg->pool, 1, sizeof(ngx_str_t)) != NGX_OK) {
        return NULL;
    }

    rcpt = ngx_array_push(&rcpts);
    if (rcpt == NULL) {
        return NULL;
    }

    *rcpt = *to;

    ngx_memzero(&env, sizeof(ngx_mail_plus_queue_envelope_t));

    env.recipients = &rcpts;
    ngx_str_set(&env.client, "127.0.0.1");
    env.helo = *host;
    env.body = body;
    env.smtputf8 = smtputf8;

    return ngx_mail_plus_queue_open(msg->spool, &env, msg->log);
}


/* the report up to the original: its parts and their fields */

static size_t
ngx_mail_plus_bounce_size(ngx_mail_plus_bounce_t *b)
{
    size_t                 len;
    ngx_uint_t             i;
    ngx_mail_plus_rcpt_t  *rcpt;
    ngx_mail_plus_dmsg_t  *msg;

    msg = b->msg;
    rcpt = msg->rcpts.elts;

    len = sizeof(NGX_MAIL_PLUS_BOUNCE_HEAD) - 1
          + 5 * b->host.len + msg->sender.len + b->date.len
          + 3 * NGX_MAIL_PLUS_QUEUE_ID_LEN
          + ngx_strlen(b->bt->subject) + ngx_strlen(b->bt->text)

          + sizeof(NGX_MAIL_PLUS_BOUNCE_CUT) - 1 + NGX_SIZE_T_LEN

          + sizeof(NGX_MAIL_PLUS_BOUNCE_STATUS) - 1
          + 2 * b->host.len + 2 * NGX_MAIL_PLUS_QUEUE_ID_LEN

          + sizeof(NGX_MAIL_PLUS_BOUNCE_ENVID) - 1 + msg->envid.len
          + sizeof(NGX_MAIL_PLUS_BOUNCE_ARRIVAL) - 1 + b->arrival.len

          + sizeof(NGX_MAIL_PLUS_BOUNCE_ORIGINAL) - 1
          + NGX_MAIL_PLUS_QUEUE_ID_LEN + b->host.len
          + sizeof("text/rfc822-headers") - 1;

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if (ngx_mail_plus_bounce_action(&rcpt[i], b->type) == NULL) {
            continue;
        }

        len += sizeof(NGX_MAIL_PLUS_BOUNCE_LINE) - 1
               + rcpt[i].addr.len + rcpt[i].reply.len

               + sizeof(NGX_MAIL_PLUS_BOUNCE_ORCPT) - 1 + rcpt[i].orcpt.len

               + sizeof(NGX_MAIL_PLUS_BOUNCE_RCPT) - 1
               + rcpt[i].addr.len + sizeof("delivered") - 1
               + rcpt[i].dsn.len

               + sizeof(NGX_MAIL_PLUS_BOUNCE_MTA) - 1
               + (rcpt[i].dest ? rcpt[i].dest->name.len : 0)

               + sizeof(NGX_MAIL_PLUS_BOUNCE_DIAG) - 1
               + sizeof("x-mail-plus") - 1 + rcpt[i].reply.len;
    }

    return len;
}


/* the header section and the part for people */

static u_char *
ngx_mail_plus_bounce_text(ngx_mail_plus_bounce_t *b, u_char *p, u_char *last)
{
    ngx_uint_t             i;
    ngx_mail_plus_rcpt_t  *rcpt;
    ngx_mail_plus_dmsg_t  *msg;

    msg = b->msg;
    rcpt = msg->rcpts.elts;

    p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_HEAD,
                     &b->host, &msg->sender, b->bt->subject,
                     &b->date, b->m->id, &b->host,
                     b->m->id, &b->host, b->m->id, &b->host, &b->host,
                     b->bt->text);

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (ngx_mail_plus_bounce_action(&rcpt[i], b->type)) {
            p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_LINE,
                             &rcpt[i].addr,
                             ngx_mail_plus_bounce_reply(msg, &rcpt[i]));
        }
    }

    if (b->cut) {
        p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_CUT,
                         b->dcf->bounce_size_limit);
    }

    return p;
}


/* the message/delivery-status part: the message's fields, then each one's */

static u_char *
ngx_mail_plus_bounce_status(ngx_mail_plus_bounce_t *b, u_char *p,
    u_char *last)
{
    ngx_uint_t             i;
    const char            *action;
    ngx_mail_plus_rcpt_t  *rcpt;
    ngx_mail_plus_dmsg_t  *msg;

    msg = b->msg;
    rcpt = msg->rcpts.elts;

    p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_STATUS,
                     b->m->id, &b->host, &b->host, msg->id);

    if (msg->envid.len) {
        p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_ENVID, &msg->envid);
    }

    p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_ARRIVAL, &b->arrival);

    for (i = 0; i < msg->rcpts.nelts; i++) {

        action = ngx_mail_plus_bounce_action(&rcpt[i], b->type);

        if (action == NULL) {
            continue;
        }

        if (rcpt[i].orcpt.len) {
            p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_ORCPT,
                             &rcpt[i].orcpt);
        }

        p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_RCPT,
                         &rcpt[i].addr, action, &rcpt[i].dsn);

        if (rcpt[i].dest) {
            p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_MTA,
                             &rcpt[i].dest->name);
        }

        p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_DIAG,
                         rcpt[i].remote ? "smtp" : "x-mail-plus",
                         ngx_mail_plus_bounce_reply(msg, &rcpt[i]));
    }

    return p;
}


/*
 * the original, or its header section, is copied in the thread pool; the
 * file is dup()ed there, so the claimed message need not wait; the last
 * boundary follows it
 */

static ngx_int_t
ngx_mail_plus_bounce_original(ngx_mail_plus_bounce_t *b)
{
    size_t                        len;
    ngx_mail_plus_dmsg_t         *msg;
    ngx_mail_plus_queue_msg_t    *m;
    ngx_mail_plus_bounce_copy_t  *bc;

    m = b->m;
    msg = b->msg;

    len = sizeof(NGX_MAIL_PLUS_BOUNCE_TAIL) - 1 + NGX_MAIL_PLUS_QUEUE_ID_LEN
          + b->host.len;

    bc = ngx_palloc(m->pool, sizeof(ngx_mail_plus_bounce_copy_t) + len);
    if (bc == NULL) {
        return NGX_ERROR;
    }

    bc->m = m;
    bc->tail.data = (u_char *) (bc + 1);
    bc->tail.len = ngx_slprintf(bc->tail.data, bc->tail.data + len,
                                NGX_MAIL_PLUS_BOUNCE_TAIL, m->id, &b->host)
                   - bc->tail.data;

    return ngx_mail_plus_queue_copy(m, msg->fd, msg->body,
                                    b->full ? msg->size
                                            : ngx_min(msg->size,
                                                NGX_MAIL_PLUS_BOUNCE_HEADERS),
                                    !b->full, ngx_mail_plus_bounce_copied,
                                    bc);
}


/* the original is in the report: its end is written, and it is queued */

static void
ngx_mail_plus_bounce_copied(void *data)
{
    ngx_mail_plus_bounce_copy_t *bc = data;

    ngx_mail_plus_queue_msg_t  *m;

    m = bc->m;

    if (m->err == 0) {
        (void) ngx_mail_plus_queue_write(m, bc->tail.data, bc->tail.len);
    }

    if (m->err) {
        ngx_log_error(NGX_LOG_CRIT, m->log, m->err,
                      "delivery: notification %s not written", m->id);

        m->handler(m);
        ngx_mail_plus_queue_abort(m);
        return;
    }

    (void) ngx_mail_plus_queue_commit(m);
}


/*
 * the Action: of a recipient in a report of the type, or NULL when the
 * report leaves it out; without NOTIFY= a recipient is reported as with
 * NOTIFY=FAILURE,DELAY
 */

static const char *
ngx_mail_plus_bounce_action(ngx_mail_plus_rcpt_t *rcpt, ngx_uint_t type)
{
    ngx_uint_t  notify;

    notify = rcpt->notify_mask ? rcpt->notify_mask
                               : NGX_MAIL_PLUS_NOTIFY_FAILURE
                                 |NGX_MAIL_PLUS_NOTIFY_DELAY;

    if (rcpt->state != ngx_mail_plus_bounce_types[type].state
        || !(notify & ngx_mail_plus_bounce_types[type].notify))
    {
        return NULL;
    }

    switch (type) {

    case NGX_MAIL_PLUS_DSN_FAILED:
        return "failed";

    case NGX_MAIL_PLUS_DSN_DELAYED:
        return "delayed";
    }

    /*
     * RFC 3461 5.2.2: "delivered" by a mailbox backend or over LMTP,
     * "relayed" to a next hop without DSN; a next hop with DSN got
     * NOTIFY= and reports the delivery itself
     */

    if (rcpt->dest == NULL) {
        return NULL;
    }

    if (rcpt->dest->relay == NULL
        || rcpt->dest->protocol == NGX_MAIL_PLUS_LMTP)
    {
        return "delivered";
    }

    return rcpt->passed ? NULL : "relayed";
}


/*
 * A failure of a message whose sender is <> (a bounce, a delay warning,
 * a notice): there is no sender to tell.  As Postfix does with its double
 * bounces, it is logged at "warn" and, with queue_double_bounce_to, a
 * short notice goes to that address, from <>.  A failure of such a notice
 * to the postmaster address itself is only logged: nothing loops.
 */

ngx_int_t
ngx_mail_plus_bounce_double(ngx_mail_plus_delivery_conf_t *dcf,
    ngx_mail_plus_dmsg_t *msg)
{
    u_char                     *p, *buf, *last;
    size_t                      len;
    ngx_str_t                   host, date, logged;
    ngx_uint_t                  i, notice;
    ngx_mail_plus_rcpt_t       *rcpt;
    ngx_mail_plus_queue_msg_t  *m;
    u_char                      now[NGX_MAIL_PLUS_DATE_LEN];

    host = dcf->helo_name;
    rcpt = msg->rcpts.elts;
    notice = 0;

    date.data = now;
    date.len = ngx_mail_plus_date(now, ngx_time()) - now;

    len = sizeof(NGX_MAIL_PLUS_BOUNCE_DOUBLE) - 1
          + 3 * host.len + dcf->double_bounce_to.len + date.len
          + 2 * NGX_MAIL_PLUS_QUEUE_ID_LEN;

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if (rcpt[i].state != NGX_MAIL_PLUS_RCPT_FAILED) {
            continue;
        }

        if (ngx_mail_plus_text_log(msg->pool, &rcpt[i].reply, &logged)
            != NGX_OK)
        {
            ngx_str_null(&logged);
        }

        ngx_log_error(NGX_LOG_WARN, msg->log, 0,
                      "delivery %s: undeliverable message from <>, "
                      "to=<%V>, reply=\"%V\"%s",
                      msg->id, &rcpt[i].addr, &logged,
                      dcf->double_bounce_to.len ? ""
                                                : ", no double bounce notice");

        len += sizeof(NGX_MAIL_PLUS_BOUNCE_LINE) - 1
               + rcpt[i].addr.len + rcpt[i].reply.len;

        if (rcpt[i].addr.len != dcf->double_bounce_to.len
            || ngx_strncasecmp(rcpt[i].addr.data, dcf->double_bounce_to.data,
                               rcpt[i].addr.len)
               != 0)
        {
            notice = 1;
        }
    }

    if (dcf->double_bounce_to.len == 0 || !notice) {
        return NGX_DECLINED;
    }

    m = ngx_mail_plus_bounce_open(msg, &dcf->double_bounce_to, &host,
                                  NGX_MAIL_PLUS_BODY_7BIT, 0);
    if (m == NULL) {
        return NGX_ERROR;
    }

    buf = ngx_pnalloc(m->pool, len);
    if (buf == NULL) {
        goto failed;
    }

    last = buf + len;

    p = ngx_slprintf(buf, last, NGX_MAIL_PLUS_BOUNCE_DOUBLE,
                     &host, &dcf->double_bounce_to, &date,
                     m->id, &host, &host, msg->id);

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_FAILED) {
            p = ngx_slprintf(p, last, NGX_MAIL_PLUS_BOUNCE_LINE,
                             &rcpt[i].addr,
                             ngx_mail_plus_bounce_reply(msg, &rcpt[i]));
        }
    }

    if (ngx_mail_plus_queue_write(m, buf, p - buf) != NGX_OK) {
        goto failed;
    }

    ngx_log_error(NGX_LOG_WARN, msg->log, 0,
                  "delivery %s: double bounce notice to <%V>: %s",
                  msg->id, &dcf->double_bounce_to, m->id);

    m->handler = ngx_mail_plus_bounce_noticed;
    m->data = NULL;

    return ngx_mail_plus_queue_commit(m);

failed:

    ngx_mail_plus_queue_abort(m);

    return NGX_ERROR;
}


static void
ngx_mail_plus_bounce_noticed(ngx_mail_plus_queue_msg_t *m)
{
    if (m->err) {
        ngx_log_error(NGX_LOG_ERR, m->log, m->err,
                      "delivery: double bounce notice %s not queued", m->id);
    }
}


/*
 * a reply as a report gives it, in its text and its Diagnostic-Code
 * (RFC 3464 2.3.6): a line of printable US-ASCII, so that a next hop can
 * neither start a field of its own nor put 8-bit bytes into a 7-bit
 * report; any other byte is "?", the length stays, the sizes hold
 */

static ngx_str_t *
ngx_mail_plus_bounce_reply(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt)
{
    u_char      *p;
    size_t       i;
    ngx_str_t   *clean;

    static ngx_str_t  none = ngx_null_string;

    for (i = 0; i < rcpt->reply.len; i++) {
        if (rcpt->reply.data[i] < 0x20 || rcpt->reply.data[i] >= 0x7f) {
            break;
        }
    }

    if (i == rcpt->reply.len) {
        return &rcpt->reply;
    }

    clean = ngx_palloc(msg->pool, sizeof(ngx_str_t) + rcpt->reply.len);
    if (clean == NULL) {
        return &none;
    }

    p = (u_char *) (clean + 1);

    for (i = 0; i < rcpt->reply.len; i++) {
        p[i] = (rcpt->reply.data[i] < 0x20 || rcpt->reply.data[i] >= 0x7f)
               ? '?' : rcpt->reply.data[i];
    }

    clean->data = p;
    clean->len = rcpt->reply.len;

    return clean;
}
