
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


typedef struct {
    ngx_uint_t                       state;    /* of the recipients */
    ngx_uint_t                       notify;   /* NOTIFY= that asks for it */
    char                            *subject;
    char                            *text;
    char                            *log;
} ngx_mail_plus_bounce_type_t;


static const char *ngx_mail_plus_bounce_action(ngx_mail_plus_rcpt_t *rcpt,
    ngx_uint_t type);
typedef struct {
    ngx_mail_plus_queue_msg_t       *m;
    ngx_str_t                        tail;     /* the last boundary */
} ngx_mail_plus_bounce_copy_t;


static void ngx_mail_plus_bounce_copied(void *data);
static void ngx_mail_plus_bounce_noticed(ngx_mail_plus_queue_msg_t *m);


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


ngx_int_t
ngx_mail_plus_bounce(ngx_mail_plus_delivery_conf_t *dcf,
    ngx_mail_plus_dmsg_t *msg, ngx_uint_t type,
    ngx_mail_plus_queue_handler_pt handler, void *data)
{
    u_char                          *p, *buf;
    size_t                           len;
    ngx_str_t                       *to, host;
    ngx_int_t                        rc;
    ngx_uint_t                       i, n, full, cut;
    const char                      *action;
    ngx_array_t                      rcpts;
    ngx_mail_plus_rcpt_t            *rcpt;
    ngx_mail_plus_queue_msg_t       *m;
    ngx_mail_plus_bounce_copy_t     *bc;
    ngx_mail_plus_bounce_type_t     *bt;
    ngx_mail_plus_queue_envelope_t   env;
    u_char                           date[sizeof("Mon, 28 Sep 1970 "
                                                 "06:00:00 GMT")];

    host = dcf->helo_name;
    bt = &ngx_mail_plus_bounce_types[type];

    /* RFC 3461 4.1: only the recipients whose NOTIFY= asks for it */

    rcpt = msg->rcpts.elts;
    n = 0;

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (ngx_mail_plus_bounce_action(&rcpt[i], type)) {
            n++;
        }
    }

    if (n == 0) {
        return NGX_DECLINED;
    }

    /*
     * RFC 3461 4.3: the whole message only in a failure report, and only
     * up to queue_bounce_size_limit; else its header section
     */

    full = (type == NGX_MAIL_PLUS_DSN_FAILED && msg->ret.len == 4
            && ngx_strncasecmp(msg->ret.data, (u_char *) "FULL", 4) == 0);

    cut = (full && msg->size > (off_t) dcf->bounce_size_limit);

    if (cut) {
        full = 0;
    }

    if (ngx_array_init(&rcpts, msg->pool, 1, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    to = ngx_array_push(&rcpts);
    if (to == NULL) {
        return NGX_ERROR;
    }

    *to = msg->sender;

    ngx_memzero(&env, sizeof(ngx_mail_plus_queue_envelope_t));

    env.recipients = &rcpts;
    ngx_str_set(&env.client, "127.0.0.1");
    env.helo = host;
    env.body = msg->body_type;
    env.smtputf8 = msg->smtputf8;

    m = ngx_mail_plus_queue_open(msg->spool, &env, msg->log);
    if (m == NULL) {
        return NGX_ERROR;
    }

    len = msg->envid.len + 2048 + 10 * host.len + msg->sender.len
          + ngx_strlen(bt->subject) + ngx_strlen(bt->text);

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (ngx_mail_plus_bounce_action(&rcpt[i], type)) {
            len += 256 + 2 * (rcpt[i].addr.len + rcpt[i].reply.len)
                   + rcpt[i].orcpt.len
                   + (rcpt[i].dest ? rcpt[i].dest->name.len : 0);
        }
    }

    buf = ngx_pnalloc(m->pool, len);
    if (buf == NULL) {
        goto failed;
    }

    *ngx_http_time(date, msg->arrival) = '\0';

    p = ngx_sprintf(buf,
                    "From: Mail Delivery System <MAILER-DAEMON@%V>" CRLF
                    "To: <%V>" CRLF
                    "Subject: %s" CRLF
                    "Date: %V" CRLF
                    "Message-ID: <%s.bounce@%V>" CRLF
                    "Auto-Submitted: auto-replied" CRLF
                    "MIME-Version: 1.0" CRLF
                    "Content-Type: multipart/report; "
                    "report-type=delivery-status;" CRLF
                    "\tboundary=\"%s/%V\"" CRLF
                    CRLF
                    "This is a MIME-encapsulated message." CRLF
                    CRLF
                    "--%s/%V" CRLF
                    "Content-Type: text/plain; charset=us-ascii" CRLF
                    CRLF
                    "This is the mail system at host %V." CRLF
                    CRLF
                    "%s" CRLF
                    CRLF,
                    &host, &msg->sender, bt->subject,
                    &ngx_cached_http_time, m->id, &host,
                    m->id, &host, m->id, &host, &host, bt->text);

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (ngx_mail_plus_bounce_action(&rcpt[i], type)) {
            p = ngx_sprintf(p, "<%V>: %V" CRLF, &rcpt[i].addr,
                            &rcpt[i].reply);
        }
    }

    if (cut) {
        p = ngx_sprintf(p, CRLF "The message is larger than %uz bytes: "
                        "only its header section is returned." CRLF,
                        dcf->bounce_size_limit);
    }

    p = ngx_sprintf(p, CRLF "--%s/%V" CRLF
                    "Content-Type: message/delivery-status" CRLF
                    CRLF
                    "Reporting-MTA: dns; %V" CRLF
                    "X-Mail-Plus-Queue-ID: %s" CRLF,
                    m->id, &host, &host, msg->id);

    if (msg->envid.len) {
        p = ngx_sprintf(p, "Original-Envelope-Id: %V" CRLF, &msg->envid);
    }

    p = ngx_sprintf(p, "Arrival-Date: %s" CRLF, date);

    for (i = 0; i < msg->rcpts.nelts; i++) {

        action = ngx_mail_plus_bounce_action(&rcpt[i], type);

        if (action == NULL) {
            continue;
        }

        if (rcpt[i].orcpt.len) {
            p = ngx_sprintf(p, CRLF "Original-Recipient: %V",
                            &rcpt[i].orcpt);
        }

        p = ngx_sprintf(p, CRLF "Final-Recipient: rfc822; %V" CRLF
                        "Action: %s" CRLF
                        "Status: %V" CRLF,
                        &rcpt[i].addr, action, &rcpt[i].dsn);

        if (rcpt[i].dest) {
            p = ngx_sprintf(p, "Remote-MTA: dns; %V" CRLF,
                            &rcpt[i].dest->name);
        }

        p = ngx_sprintf(p, "Diagnostic-Code: %s; %V" CRLF,
                        rcpt[i].remote ? "smtp" : "x-mail-plus",
                        &rcpt[i].reply);
    }

    p = ngx_sprintf(p, CRLF "--%s/%V" CRLF
                    "Content-Type: %s" CRLF
                    CRLF,
                    m->id, &host,
                    full ? "message/rfc822" : "text/rfc822-headers");

    if (ngx_mail_plus_queue_write(m, buf, p - buf) != NGX_OK) {
        goto failed;
    }

    ngx_log_error(NGX_LOG_INFO, msg->log, 0,
                  "delivery %s: sender %s notification: %s",
                  msg->id, bt->log, m->id);

    m->handler = handler;
    m->data = data;

    /* the end, after the original: its last boundary */

    len = sizeof(CRLF "--/--" CRLF) - 1 + NGX_MAIL_PLUS_QUEUE_ID_LEN
          + host.len;

    bc = ngx_palloc(m->pool, sizeof(ngx_mail_plus_bounce_copy_t) + len);
    if (bc == NULL) {
        goto failed;
    }

    bc->m = m;
    bc->tail.data = (u_char *) (bc + 1);
    bc->tail.len = ngx_sprintf(bc->tail.data, CRLF "--%s/%V--" CRLF,
                               m->id, &host)
                   - bc->tail.data;

    /*
     * the original, or its header section, is copied in the thread pool;
     * the file is dup()ed there, so the claimed message need not wait
     */

    rc = ngx_mail_plus_queue_copy(m, msg->fd, msg->body,
                                  full ? msg->size
                                       : ngx_min(msg->size,
                                                 NGX_MAIL_PLUS_BOUNCE_HEADERS),
                                  !full, ngx_mail_plus_bounce_copied, bc);

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

failed:

    ngx_mail_plus_queue_abort(m);

    return NGX_ERROR;
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
    u_char                          *p, *buf;
    size_t                           len;
    ngx_str_t                       *to, host;
    ngx_uint_t                       i, notice;
    ngx_array_t                      rcpts;
    ngx_mail_plus_rcpt_t            *rcpt;
    ngx_mail_plus_queue_msg_t       *m;
    ngx_mail_plus_queue_envelope_t   env;

    host = dcf->helo_name;
    rcpt = msg->rcpts.elts;
    notice = 0;

    len = 2048 + 4 * host.len + dcf->double_bounce_to.len;

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if (rcpt[i].state != NGX_MAIL_PLUS_RCPT_FAILED) {
            continue;
        }

        ngx_log_error(NGX_LOG_WARN, msg->log, 0,
                      "delivery %s: undeliverable message from <>, "
                      "to=<%V>, reply=\"%V\"%s",
                      msg->id, &rcpt[i].addr, &rcpt[i].reply,
                      dcf->double_bounce_to.len ? ""
                                                : ", no double bounce notice");

        len += sizeof("<>: " CRLF) - 1 + rcpt[i].addr.len + rcpt[i].reply.len;

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

    if (ngx_array_init(&rcpts, msg->pool, 1, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    to = ngx_array_push(&rcpts);
    if (to == NULL) {
        return NGX_ERROR;
    }

    *to = dcf->double_bounce_to;

    ngx_memzero(&env, sizeof(ngx_mail_plus_queue_envelope_t));

    env.recipients = &rcpts;
    ngx_str_set(&env.client, "127.0.0.1");
    env.helo = host;
    env.body = NGX_MAIL_PLUS_BODY_7BIT;

    m = ngx_mail_plus_queue_open(msg->spool, &env, msg->log);
    if (m == NULL) {
        return NGX_ERROR;
    }

    buf = ngx_pnalloc(m->pool, len);
    if (buf == NULL) {
        goto failed;
    }

    p = ngx_sprintf(buf,
                    "From: Mail Delivery System <MAILER-DAEMON@%V>" CRLF
                    "To: <%V>" CRLF
                    "Subject: Undeliverable mail from <> (double bounce)"
                    CRLF
                    "Date: %V" CRLF
                    "Message-ID: <%s.double@%V>" CRLF
                    "Auto-Submitted: auto-replied" CRLF
                    "MIME-Version: 1.0" CRLF
                    "Content-Type: text/plain; charset=us-ascii" CRLF
                    CRLF
                    "This is the mail system at host %V." CRLF
                    CRLF
                    "A message with the null sender <> (a delivery status "
                    "notification or" CRLF
                    "another automatic message) could not be delivered, and "
                    "there is no" CRLF
                    "sender to return it to.  It has been removed from the "
                    "queue." CRLF
                    CRLF
                    "Queue ID: %s" CRLF
                    CRLF,
                    &host, &dcf->double_bounce_to, &ngx_cached_http_time,
                    m->id, &host, &host, msg->id);

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_FAILED) {
            p = ngx_sprintf(p, "<%V>: %V" CRLF, &rcpt[i].addr,
                            &rcpt[i].reply);
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
