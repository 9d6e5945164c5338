
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_delivery.h"


/*
 * The reader of a queue file's records for the delivery: the envelope
 * (docs/spool.md) and the state file of earlier attempts.  A queue file
 * can be corrupt, so everything here is read as hostile bytes: pure
 * functions over buffers the queue read in its thread pool, with no I/O,
 * checked by the fuzz target spool_record.
 */


static ngx_int_t ngx_mail_plus_spool_address(ngx_str_t *addr);
static void ngx_mail_plus_spool_dsn(ngx_mail_plus_rcpt_t *rcpt,
    ngx_str_t *v);


/*
 * the envelope lines of a queue file of "size" bytes, from the first
 * "len" bytes read of it, up to "end"; NGX_DECLINED: the file is corrupt
 * (*reason says why), NGX_ERROR: no memory, which is not the file's fault
 */

ngx_int_t
ngx_mail_plus_spool_envelope(ngx_mail_plus_dmsg_t *msg, u_char *buf,
    size_t len, off_t size, char **reason)
{
    u_char                *p, *last, *eol;
    ngx_str_t              v;
    ngx_mail_plus_rcpt_t  *rcpt;

    if (size == 0 || len == 0) {
        *reason = "empty file";
        return NGX_DECLINED;
    }

    if (ngx_array_init(&msg->rcpts, msg->pool, 4,
                       sizeof(ngx_mail_plus_rcpt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_strlcasestrn(buf, buf + len, (u_char *) CRLF "end" CRLF, 6);

    if (p == NULL) {
        *reason = ((off_t) len >= size) ? "truncated envelope, no \"end\" line"
                                        : "no \"end\" line in the first 64 MB";
        return NGX_DECLINED;
    }

    msg->body = p + 7 - buf;
    msg->size = size - msg->body;

    if (p - buf < 18 || ngx_strncmp(buf, "MAILPLUS-QUEUE 1" CRLF, 18) != 0) {
        *reason = "bad header, no \"MAILPLUS-QUEUE 1\" line";
        return NGX_DECLINED;
    }

    /* the "id" line names the file: a file under another name is suspect */

    if (p - buf < 18 + 3 + NGX_MAIL_PLUS_QUEUE_ID_LEN + 2
        || ngx_strncmp(buf + 18, "id ", 3) != 0
        || ngx_strncmp(buf + 21, msg->id, NGX_MAIL_PLUS_QUEUE_ID_LEN) != 0
        || ngx_strncmp(buf + 21 + NGX_MAIL_PLUS_QUEUE_ID_LEN, CRLF, 2) != 0)
    {
        *reason = "the \"id\" line does not match the file name";
        return NGX_DECLINED;
    }

    last = p + 2;

    for (p = buf; p < last; p = eol + 2) {
        eol = ngx_strlchr(p, last, CR);
        if (eol == NULL) {
            break;
        }

        v.data = ngx_strlchr(p, eol, ' ');
        if (v.data == NULL) {
            continue;
        }

        v.data++;
        v.len = eol - v.data;

        switch (v.data - p) {

        case 4:
            if (ngx_strncmp(p, "ret ", 4) == 0 && v.len <= 4) {
                msg->ret = v;

            } else if (ngx_strncmp(p, "dsn ", 4) == 0 && msg->rcpts.nelts) {
                rcpt = msg->rcpts.elts;
                ngx_mail_plus_spool_dsn(&rcpt[msg->rcpts.nelts - 1], &v);
            }

            break;

        case 6:
            if (ngx_strncmp(p, "envid ", 6) == 0 && v.len <= 100) {
                msg->envid = v;
            }

            break;

        case 5:
            if (ngx_strncmp(p, "rcpt ", 5) == 0) {
                if (v.len == 0 || ngx_mail_plus_spool_address(&v) != NGX_OK)
                {
                    *reason = "bad \"rcpt\" line";
                    return NGX_DECLINED;
                }

                rcpt = ngx_array_push(&msg->rcpts);
                if (rcpt == NULL) {
                    return NGX_ERROR;
                }

                ngx_memzero(rcpt, sizeof(ngx_mail_plus_rcpt_t));
                rcpt->addr = v;
                rcpt->login = v;

            } else if (ngx_strncmp(p, "body ", 5) == 0) {
                msg->body_type = (v.len >= 8
                                  && ngx_strncmp(v.data, "8BITMIME", 8) == 0)
                                 ? NGX_MAIL_PLUS_BODY_8BITMIME
                                 : NGX_MAIL_PLUS_BODY_7BIT;
            }

            break;

        case 7:
            if (ngx_strncmp(p, "sender ", 7) == 0) {
                if (ngx_mail_plus_spool_address(&v) != NGX_OK) {
                    *reason = "bad \"sender\" line";
                    return NGX_DECLINED;
                }

                msg->sender = v;
            }

            break;

        case 8:
            if (ngx_strncmp(p, "arrival ", 8) == 0) {
                msg->arrival = ngx_atotm(v.data, v.len);
            }

            break;

        case 9:
            if (ngx_strncmp(p, "smtputf8 ", 9) == 0) {
                msg->smtputf8 = (v.len == 3
                                 && ngx_strncmp(v.data, "yes", 3) == 0);
            }

            break;
        }
    }

    if (msg->rcpts.nelts == 0) {
        *reason = "no recipients";
        return NGX_DECLINED;
    }

    if (msg->arrival <= 0) {
        *reason = "no valid \"arrival\" line";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* an address as the SMTP server stores it: no spaces, no control bytes */

static ngx_int_t
ngx_mail_plus_spool_address(ngx_str_t *addr)
{
    size_t  i;

    for (i = 0; i < addr->len; i++) {
        if (addr->data[i] <= ' ' || addr->data[i] == 0x7f) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* "dsn NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com" of a recipient */

static void
ngx_mail_plus_spool_dsn(ngx_mail_plus_rcpt_t *rcpt, ngx_str_t *v)
{
    u_char  *p, *last, *end;

    p = v->data;
    last = p + v->len;

    while (p < last) {
        end = ngx_strlchr(p, last, ' ');
        if (end == NULL) {
            end = last;
        }

        if (end - p > 7 && end - p <= 64
            && ngx_strncasecmp(p, (u_char *) "NOTIFY=", 7) == 0)
        {
            rcpt->notify.data = p + 7;
            rcpt->notify.len = end - p - 7;

            if (ngx_strlcasestrn(p, end, (u_char *) "NEVER", 5 - 1)) {
                rcpt->notify_mask |= NGX_MAIL_PLUS_NOTIFY_NEVER;
            }

            if (ngx_strlcasestrn(p, end, (u_char *) "SUCCESS", 7 - 1)) {
                rcpt->notify_mask |= NGX_MAIL_PLUS_NOTIFY_SUCCESS;
            }

            if (ngx_strlcasestrn(p, end, (u_char *) "FAILURE", 7 - 1)) {
                rcpt->notify_mask |= NGX_MAIL_PLUS_NOTIFY_FAILURE;
            }

            if (ngx_strlcasestrn(p, end, (u_char *) "DELAY", 5 - 1)) {
                rcpt->notify_mask |= NGX_MAIL_PLUS_NOTIFY_DELAY;
            }

        } else if (end - p > 6 && end - p <= 512
                   && ngx_strncasecmp(p, (u_char *) "ORCPT=", 6) == 0)
        {
            rcpt->orcpt.data = p + 6;
            rcpt->orcpt.len = end - p - 6;
        }

        p = end + 1;
    }
}


/*
 * the state file of earlier attempts:
 *
 *     attempts 3
 *     done b@example.com
 */

void
ngx_mail_plus_spool_state(ngx_mail_plus_dmsg_t *msg, u_char *data,
    size_t len)
{
    u_char                *p, *last, *eol;
    ngx_str_t              v;
    ngx_uint_t             i;
    ngx_mail_plus_rcpt_t  *rcpt;

    if (data == NULL) {
        return;
    }

    rcpt = msg->rcpts.elts;
    last = data + len;

    for (p = data; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, LF);
        if (eol == NULL) {
            break;
        }

        if (eol - p > 9 && ngx_strncmp(p, "attempts ", 9) == 0) {
            msg->attempts = ngx_atoi(p + 9, eol - p - 9);

            if (msg->attempts == (ngx_uint_t) NGX_ERROR) {
                msg->attempts = 0;
            }

            continue;
        }

        if (eol - p == 8 && ngx_strncmp(p, "warned 1", 8) == 0) {
            msg->warned = 1;
            continue;
        }

        if (eol - p > 5 && ngx_strncmp(p, "done ", 5) == 0) {
            v.data = p + 5;
            v.len = eol - v.data;

            for (i = 0; i < msg->rcpts.nelts; i++) {
                if (rcpt[i].addr.len == v.len
                    && ngx_strncmp(rcpt[i].addr.data, v.data, v.len) == 0)
                {
                    rcpt[i].state = NGX_MAIL_PLUS_RCPT_DONE;
                }
            }
        }
    }
}
