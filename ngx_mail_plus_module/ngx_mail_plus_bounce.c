
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_delivery.h"


/*
 * Delivery status notifications (RFC 3464): the recipients of a message
 * that failed are reported to its envelope sender in a multipart/report
 * with a message/delivery-status part and the original header section.
 * The report goes into the same queue with the null sender, so it is
 * itself never bounced.
 */


#define NGX_MAIL_PLUS_BOUNCE_HEADERS  (64 * 1024)


static ngx_int_t ngx_mail_plus_bounce_headers(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_queue_msg_t *m);


ngx_int_t
ngx_mail_plus_bounce(ngx_mail_plus_dmsg_t *msg, ngx_uint_t delayed,
    ngx_mail_plus_queue_handler_pt handler, void *data)
{
    u_char                          *p, *buf;
    size_t                           len;
    ngx_str_t                       *to, host;
    ngx_uint_t                       i, n, state, mask;
    ngx_array_t                      rcpts;
    ngx_mail_plus_rcpt_t            *rcpt;
    ngx_mail_plus_queue_msg_t       *m;
    ngx_mail_plus_queue_envelope_t   env;
    u_char                           date[sizeof("Mon, 28 Sep 1970 "
                                                 "06:00:00 GMT")];

    host = ngx_cycle->hostname;

    state = delayed ? NGX_MAIL_PLUS_RCPT_DEFERRED : NGX_MAIL_PLUS_RCPT_FAILED;
    mask = delayed ? NGX_MAIL_PLUS_NOTIFY_DELAY : NGX_MAIL_PLUS_NOTIFY_FAILURE;

    /* RFC 3461 4.1: only the recipients whose NOTIFY= asks for it */

    rcpt = msg->rcpts.elts;
    n = 0;

    for (i = 0; i < msg->rcpts.nelts; i++) {
        rcpt[i].quiet = (rcpt[i].notify_mask
                         && !(rcpt[i].notify_mask & mask));

        if (rcpt[i].state == state && !rcpt[i].quiet) {
            n++;
        }
    }

    if (n == 0) {
        return NGX_DECLINED;
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

    len = msg->envid.len + 2048 + 10 * host.len + msg->sender.len;

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (rcpt[i].state == state && !rcpt[i].quiet) {
            len += 256 + 2 * (rcpt[i].addr.len + rcpt[i].reply.len)
                   + rcpt[i].orcpt.len
                   + (rcpt[i].dest ? rcpt[i].dest->name.len : 0);
        }
    }

    buf = ngx_pnalloc(m->pool, len);
    if (buf == NULL) {
        goto failed;
    }

    (void) ngx_http_time(date, msg->arrival);

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
                    &host, &msg->sender,
                    delayed ? "Delayed Mail (still being retried)"
                            : "Undelivered Mail Returned to Sender",
                    &ngx_cached_http_time, m->id, &host,
                    m->id, &host, m->id, &host, &host,
                    delayed ? "Your message could not be delivered yet to "
                              "one or more recipients; it will be retried."
                            : "Your message could not be delivered to one "
                              "or more recipients.");

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (rcpt[i].state == state && !rcpt[i].quiet) {
            p = ngx_sprintf(p, "<%V>: %V" CRLF, &rcpt[i].addr,
                            &rcpt[i].reply);
        }
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

        if (rcpt[i].state != state || rcpt[i].quiet) {
            continue;
        }

        if (rcpt[i].orcpt.len) {
            p = ngx_sprintf(p, CRLF "Original-Recipient: %V",
                            &rcpt[i].orcpt);
        }

        p = ngx_sprintf(p, CRLF "Final-Recipient: rfc822; %V" CRLF
                        "Action: %s" CRLF
                        "Status: %V" CRLF,
                        &rcpt[i].addr, delayed ? "delayed" : "failed",
                        &rcpt[i].dsn);

        if (rcpt[i].dest) {
            p = ngx_sprintf(p, "Remote-MTA: dns; %V" CRLF,
                            &rcpt[i].dest->name);
        }

        p = ngx_sprintf(p, "Diagnostic-Code: %s; %V" CRLF,
                        rcpt[i].remote ? "smtp" : "x-mail-plus",
                        &rcpt[i].reply);
    }

    p = ngx_sprintf(p, CRLF "--%s/%V" CRLF
                    "Content-Type: text/rfc822-headers" CRLF
                    CRLF,
                    m->id, &host);

    if (ngx_mail_plus_queue_write(m, buf, p - buf) != NGX_OK
        || ngx_mail_plus_bounce_headers(msg, m) != NGX_OK)
    {
        goto failed;
    }

    p = ngx_sprintf(buf, CRLF "--%s/%V--" CRLF, m->id, &host);

    if (ngx_mail_plus_queue_write(m, buf, p - buf) != NGX_OK) {
        goto failed;
    }

    ngx_log_error(NGX_LOG_INFO, msg->log, 0,
                  "delivery %s: sender %s notification: %s",
                  msg->id, delayed ? "delay" : "non-delivery", m->id);

    m->handler = handler;
    m->data = data;

    return ngx_mail_plus_queue_commit(m);

failed:

    ngx_mail_plus_queue_abort(m);

    return NGX_ERROR;
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
