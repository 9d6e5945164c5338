
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"


/*
 * What the ways in of a message share, SMTP (ngx_mail_plus_smtp_data.c
 * and _envelope.c), HTTP (ngx_http_mail_plus_submit_module.c) and JMAP
 * (ngx_http_mail_plus_jmap_submission.c): the Received field, the
 * Message-ID and Date fields of an authenticated submission, the DSN
 * parameters of a recipient as the queue file keeps them, and the writer
 * of a submitted message into the queue that HTTP and JMAP use.
 */


static ngx_int_t ngx_mail_plus_submission_flush(
    ngx_mail_plus_submission_t *s);
static ngx_int_t ngx_mail_plus_submission_add_fields(
    ngx_mail_plus_submission_t *s);


/*
 * RFC 5321 4.4, with the protocol names of RFC 3848 ("ESMTPSA") or ours
 * ("HTTPA"); NGX_MAIL_PLUS_RECEIVED_LEN bytes at most beyond the lengths
 * of the names
 */

u_char *
ngx_mail_plus_received(u_char *p, ngx_mail_plus_received_t *rv)
{
    if (rv->helo.len) {
        p = ngx_sprintf(p, "Received: from %V ([%s%V])" CRLF,
                        &rv->helo, rv->ipv6 ? "IPv6:" : "", &rv->addr);

    } else {
        p = ngx_sprintf(p, "Received: from [%s%V]" CRLF,
                        rv->ipv6 ? "IPv6:" : "", &rv->addr);
    }

    p = ngx_sprintf(p, "\tby %V (nginx mail_plus) with %s id %s",
                    &rv->server_name, rv->with, rv->id);

    if (rv->rcpt) {
        p = ngx_sprintf(p, CRLF "\tfor <%V>", rv->rcpt);
    }

    p = ngx_cpymem(p, ";" CRLF "\t", 4);
    p = ngx_mail_plus_date(p, ngx_time());
    *p++ = CR; *p++ = LF;

    return p;
}


/*
 * an authenticated submission gets Message-ID and Date where it has none
 * (RFC 6409 8); NGX_MAIL_PLUS_FIELDS_LEN bytes at most beyond the server
 * name
 */

u_char *
ngx_mail_plus_submission_fields(u_char *p, ngx_mail_plus_smtp_data_t *d,
    u_char *id, ngx_str_t *server_name)
{
    if (!d->has_message_id) {
        p = ngx_sprintf(p, "Message-ID: <%s@%V>" CRLF, id, server_name);
    }

    if (!d->has_date) {
        p = ngx_cpymem(p, "Date: ", 6);
        p = ngx_mail_plus_date(p, ngx_time());
        *p++ = CR; *p++ = LF;
    }

    return p;
}


/* RFC 3461: "NOTIFY=... ORCPT=..." of a recipient, possibly empty */

ngx_int_t
ngx_mail_plus_dsn_value(ngx_pool_t *pool, ngx_mail_plus_smtp_path_t *path,
    ngx_str_t *dsn)
{
    dsn->len = 0;
    dsn->data = ngx_pnalloc(pool, sizeof("NOTIFY= ORCPT=") - 1
                                  + path->notify.len + path->orcpt.len);
    if (dsn->data == NULL) {
        return NGX_ERROR;
    }

    if (path->notify.len) {
        dsn->len = ngx_sprintf(dsn->data, "NOTIFY=%V", &path->notify)
                   - dsn->data;
    }

    if (path->orcpt.len) {
        dsn->len = ngx_sprintf(dsn->data + dsn->len, "%sORCPT=%V",
                               dsn->len ? " " : "", &path->orcpt)
                   - dsn->data;
    }

    return NGX_OK;
}


ngx_int_t
ngx_mail_plus_submission_open(ngx_mail_plus_submission_t *s,
    ngx_mail_plus_queue_t *q, ngx_mail_plus_queue_envelope_t *env,
    ngx_mail_plus_received_t *rv, ngx_pool_t *pool, ngx_log_t *log)
{
    s->wbuf = ngx_pnalloc(pool, NGX_MAIL_PLUS_SUBMISSION_WRITE_SIZE);
    if (s->wbuf == NULL) {
        return NGX_ERROR;
    }

    s->wpos = s->wbuf;
    s->wend = s->wbuf + NGX_MAIL_PLUS_SUBMISSION_WRITE_SIZE;

    s->msg = ngx_mail_plus_queue_open(q, env, log);
    if (s->msg == NULL) {
        return NGX_DECLINED;
    }

    ngx_mail_plus_smtp_data_init(&s->data, 1);

    rv->id = s->msg->id;

    s->wpos = ngx_mail_plus_received(s->wpos, rv);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                   "submission: message %s opened in the queue", s->msg->id);

    return NGX_OK;
}


ngx_int_t
ngx_mail_plus_submission_write(ngx_mail_plus_submission_t *s, u_char *pos,
    u_char *last)
{
    ngx_int_t  rc;

    while (pos < last) {

        rc = ngx_mail_plus_smtp_read_data(&s->data, &pos, last, &s->wpos,
                                          s->wend);

        if (s->data.size > s->max_size) {
            return NGX_DECLINED;
        }

        if (rc == NGX_MAIL_PLUS_SMTP_OUT_FULL) {
            rc = ngx_mail_plus_submission_flush(s);

        } else if (rc == NGX_MAIL_PLUS_SMTP_HEADERS) {
            rc = ngx_mail_plus_submission_add_fields(s);

        } else {
            rc = NGX_OK;
        }

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_mail_plus_submission_end(ngx_mail_plus_submission_t *s)
{
    if (s->wend - s->wpos < 8 && ngx_mail_plus_submission_flush(s) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the last line gets its line ending */

    s->wpos = ngx_mail_plus_smtp_data_finish(&s->data, s->wpos);

    if (s->data.headers && ngx_mail_plus_submission_add_fields(s) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_mail_plus_submission_flush(s) != NGX_OK) {
        return NGX_ERROR;
    }

    if (s->data.eight_bit
        && ngx_mail_plus_queue_set_body(s->msg, NGX_MAIL_PLUS_BODY_8BITMIME)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->msg->log, 0,
                   "submission: message %s of %O bytes written",
                   s->msg->id, s->data.size);

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_submission_flush(ngx_mail_plus_submission_t *s)
{
    size_t  len;

    len = s->wpos - s->wbuf;
    s->wpos = s->wbuf;

    return ngx_mail_plus_queue_write(s->msg, s->wbuf, len);
}


/* Message-ID and Date where the message has none, as SMTP AUTH gets */

static ngx_int_t
ngx_mail_plus_submission_add_fields(ngx_mail_plus_submission_t *s)
{
    s->data.headers = 0;

    if (s->data.has_message_id && s->data.has_date) {
        return NGX_OK;
    }

    if ((size_t) (s->wend - s->wpos)
        < NGX_MAIL_PLUS_FIELDS_LEN + s->server_name.len
        && ngx_mail_plus_submission_flush(s) != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->wpos = ngx_mail_plus_submission_fields(s->wpos, &s->data, s->msg->id,
                                              &s->server_name);

    return NGX_OK;
}
