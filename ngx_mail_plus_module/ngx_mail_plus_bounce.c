
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
static ngx_int_t ngx_mail_plus_bounce_headers(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_queue_msg_t *m);
static ngx_int_t ngx_mail_plus_bounce_message(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_queue_msg_t *m);


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

    rc = full ? ngx_mail_plus_bounce_message(msg, m)
              : ngx_mail_plus_bounce_headers(msg, m);

    if (rc != NGX_OK) {
        goto failed;
    }

    p = ngx_sprintf(buf, CRLF "--%s/%V--" CRLF, m->id, &host);

    if (ngx_mail_plus_queue_write(m, buf, p - buf) != NGX_OK) {
        goto failed;
    }

    ngx_log_error(NGX_LOG_INFO, msg->log, 0,
                  "delivery %s: sender %s notification: %s",
                  msg->id, bt->log, m->id);

    m->handler = handler;
    m->data = data;

    return ngx_mail_plus_queue_commit(m);

failed:

    ngx_mail_plus_queue_abort(m);

    return NGX_ERROR;
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


/* the header section of the original message, up to the empty line */

static ngx_int_t
ngx_mail_plus_bounce_headers(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_queue_msg_t *m)
{
    u_char   *buf, *end;
    off_t     offset;
    size_t    len;
    ssize_t   n;

    len = (size_t) ngx_min(msg->size, NGX_MAIL_PLUS_BOUNCE_HEADERS);

    if (len == 0) {
        return NGX_OK;
    }

    buf = ngx_pnalloc(m->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    offset = msg->body;

    n = pread(msg->fd, buf, len, offset);
    if (n <= 0) {
        return NGX_ERROR;
    }

    end = ngx_strlcasestrn(buf, buf + n, (u_char *) CRLF CRLF, 3);

    len = end ? (size_t) (end - buf + 2) : (size_t) n;

    return ngx_mail_plus_queue_write(m, buf, len);
}


/* RET=FULL: the whole content, in chunks, as the client sends it */

static ngx_int_t
ngx_mail_plus_bounce_message(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_queue_msg_t *m)
{
    u_char   *buf;
    off_t     offset, last;
    size_t    len;
    ssize_t   n;

    buf = ngx_pnalloc(m->pool, NGX_MAIL_PLUS_BOUNCE_CHUNK);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    offset = msg->body;
    last = msg->body + msg->size;

    while (offset < last) {
        len = (size_t) ngx_min(last - offset, NGX_MAIL_PLUS_BOUNCE_CHUNK);

        n = pread(msg->fd, buf, len, offset);
        if (n <= 0) {
            return NGX_ERROR;
        }

        if (ngx_mail_plus_queue_write(m, buf, n) != NGX_OK) {
            return NGX_ERROR;
        }

        offset += n;
    }

    return NGX_OK;
}
