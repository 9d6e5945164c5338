
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_queue.h"
#include "ngx_mail_plus_queue_spool.h"


/*
 * The one writer and the one reader of a queue file's records
 * (docs/spool.md): the envelope at the start of the file, and the state
 * file of earlier attempts.  A change to the format is made here alone.
 *
 * The writers compute the size first, then write: pure functions over
 * buffers, no I/O.  A queue file can be corrupt, so the readers read
 * everything as hostile bytes, from buffers the queue read in its thread
 * pool; they are checked by the fuzz target spool_record.
 */


static ngx_int_t ngx_mail_plus_spool_address(ngx_str_t *addr);
static void ngx_mail_plus_spool_dsn(ngx_mail_plus_queue_rcpt_t *rcpt,
    ngx_str_t *v);
static ngx_uint_t ngx_mail_plus_spool_status(u_char *p, size_t len);
static u_char *ngx_mail_plus_spool_escape(u_char *p, ngx_str_t *src,
    ngx_uint_t space);
static ssize_t ngx_mail_plus_spool_escaped(u_char *p, u_char *last,
    ngx_uint_t space);
static void ngx_mail_plus_spool_error(ngx_mail_plus_queue_record_t *r,
    u_char *p, u_char *last);


/* the envelope lines of a new message, at most */

size_t
ngx_mail_plus_spool_envelope_size(ngx_mail_plus_queue_envelope_t *env)
{
    size_t       len;
    ngx_str_t   *rcpt, *dsn;
    ngx_uint_t   i;

    len = sizeof("MAILPLUS-QUEUE 1" CRLF) - 1
          + sizeof("id " CRLF) - 1 + NGX_MAIL_PLUS_QUEUE_ID_LEN
          + sizeof("arrival " CRLF) - 1 + NGX_TIME_T_LEN
          + sizeof("client " CRLF) - 1 + env->client.len
          + sizeof("helo " CRLF) - 1 + env->helo.len
          + sizeof("login " CRLF) - 1 + env->login.len
          + sizeof("body 8BITMIME" CRLF) - 1 + 1
          + sizeof("smtputf8 yes" CRLF) - 1
          + sizeof("sender " CRLF) - 1 + env->sender.len
          + sizeof("end" CRLF) - 1;

    rcpt = env->recipients->elts;
    dsn = env->dsn ? env->dsn->elts : NULL;

    for (i = 0; i < env->recipients->nelts; i++) {
        len += sizeof("rcpt " CRLF) - 1 + rcpt[i].len;

        if (dsn) {
            len += sizeof("dsn " CRLF) - 1 + dsn[i].len;
        }
    }

    len += sizeof("ret " CRLF) - 1 + env->ret.len
           + sizeof("envid " CRLF) - 1 + env->envid.len;

    return len;
}


/*
 * the envelope lines, into the room ngx_mail_plus_spool_envelope_size()
 * asked for; *body: where the value of the "body" line is, to be
 * corrected with ngx_mail_plus_spool_body_value() once the content is read
 */

u_char *
ngx_mail_plus_spool_envelope_write(u_char *p, u_char *id, time_t arrival,
    ngx_mail_plus_queue_envelope_t *env, off_t *body)
{
    u_char      *start;
    ngx_str_t   *rcpt, *dsn;
    ngx_uint_t   i;

    start = p;

    p = ngx_sprintf(p, "MAILPLUS-QUEUE 1" CRLF "id %s" CRLF
                    "arrival %T" CRLF "client %V" CRLF "helo %V" CRLF
                    "login %V" CRLF "body ",
                    id, arrival, &env->client, &env->helo, &env->login);

    /* fixed width: the value may be corrected when the content is read */

    *body = p - start;

    p = ngx_sprintf(p, "%s" CRLF "smtputf8 %s" CRLF "sender %V" CRLF,
                    ngx_mail_plus_spool_body_value(env->body),
                    env->smtputf8 ? "yes" : "no", &env->sender);

    /* RFC 3461 parameters, where the client gave them */

    if (env->ret.len) {
        p = ngx_sprintf(p, "ret %V" CRLF, &env->ret);
    }

    if (env->envid.len) {
        p = ngx_sprintf(p, "envid %V" CRLF, &env->envid);
    }

    rcpt = env->recipients->elts;
    dsn = env->dsn ? env->dsn->elts : NULL;

    for (i = 0; i < env->recipients->nelts; i++) {
        p = ngx_sprintf(p, "rcpt %V" CRLF, &rcpt[i]);

        if (dsn && dsn[i].len) {
            p = ngx_sprintf(p, "dsn %V" CRLF, &dsn[i]);
        }
    }

    return ngx_cpymem(p, "end" CRLF, 5);
}


/* the value of the "body" line: 8 bytes, so that it can be rewritten */

char *
ngx_mail_plus_spool_body_value(ngx_uint_t body)
{
    return (body == NGX_MAIL_PLUS_BODY_8BITMIME) ? "8BITMIME" : "7BIT    ";
}


/*
 * the envelope of a queue file of "size" bytes, from the first "len"
 * bytes read of it, up to its "end" line; the recipients go to r->rcpts
 * (an array the caller made); NGX_DECLINED: the file is corrupt (*reason
 * says why), NGX_ERROR: no memory, which is not the file's fault
 */

ngx_int_t
ngx_mail_plus_spool_envelope(ngx_mail_plus_queue_record_t *r, u_char *id,
    u_char *buf, size_t len, off_t size, char **reason)
{
    u_char     *p, *last, *eol;
    ngx_int_t   rc;

    if (size == 0 || len == 0) {
        *reason = "empty file";
        return NGX_DECLINED;
    }

    p = ngx_strlcasestrn(buf, buf + len, (u_char *) CRLF "end" CRLF, 6);

    if (p == NULL) {
        *reason = ((off_t) len >= size) ? "truncated envelope, no \"end\" line"
                                        : "no \"end\" line in the first 64 MB";
        return NGX_DECLINED;
    }

    r->body = p + 7 - buf;
    r->size = size - r->body;

    if (p - buf < 18 || ngx_strncmp(buf, "MAILPLUS-QUEUE 1" CRLF, 18) != 0) {
        *reason = "bad header, no \"MAILPLUS-QUEUE 1\" line";
        return NGX_DECLINED;
    }

    /* the "id" line names the file: a file under another name is suspect */

    if (p - buf < 18 + 3 + NGX_MAIL_PLUS_QUEUE_ID_LEN + 2
        || ngx_strncmp(buf + 18, "id ", 3) != 0
        || ngx_strncmp(buf + 21, id, NGX_MAIL_PLUS_QUEUE_ID_LEN) != 0
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

        rc = ngx_mail_plus_spool_line(r, p, eol, reason);

        if (rc == NGX_DECLINED || rc == NGX_ERROR) {
            return rc;
        }
    }

    if (r->nrcpts == 0) {
        *reason = "no recipients";
        return NGX_DECLINED;
    }

    if (r->arrival <= 0) {
        *reason = "no valid \"arrival\" line";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * the envelope lines of a file shown as it is, up to its "end" line, with
 * CRLF or LF line ends: nothing is checked, a value the delivery would
 * refuse (an address, a "ret" or "envid" too long) is shown all the same,
 * lines that cannot be read are skipped; NGX_ERROR: no memory
 */

ngx_int_t
ngx_mail_plus_spool_show(ngx_mail_plus_queue_record_t *r, u_char *buf,
    size_t len)
{
    char       *reason;
    u_char     *p, *eol, *end, *last;
    ngx_int_t   rc;

    last = buf + len;

    r->as_is = 1;

    for (p = buf; (eol = ngx_strlchr(p, last, LF)) != NULL; p = eol + 1) {
        end = (eol > p && eol[-1] == CR) ? eol - 1 : eol;

        rc = ngx_mail_plus_spool_line(r, p, end, &reason);

        if (rc == NGX_DONE || rc == NGX_ERROR) {
            return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
        }
    }

    return NGX_OK;
}


/*
 * one envelope line, without its line end: NGX_DONE at the "end" line,
 * NGX_DECLINED for a bad line (*reason says why; a bad sender is kept in
 * r->sender all the same, for a listing), NGX_ERROR: no memory; lines
 * unknown are skipped; with r->rcpts NULL, recipients are only counted
 */

ngx_int_t
ngx_mail_plus_spool_line(ngx_mail_plus_queue_record_t *r, u_char *p,
    u_char *eol, char **reason)
{
    ngx_str_t                    v;
    ngx_mail_plus_queue_rcpt_t  *rcpt;

    if (eol - p == 3 && ngx_strncmp(p, "end", 3) == 0) {
        return NGX_DONE;
    }

    v.data = ngx_strlchr(p, eol, ' ');
    if (v.data == NULL) {
        return NGX_OK;
    }

    v.data++;
    v.len = eol - v.data;

    switch (v.data - p) {

    case 4:
        if (ngx_strncmp(p, "ret ", 4) == 0 && (v.len <= 4 || r->as_is)) {
            r->ret = v;

        } else if (ngx_strncmp(p, "dsn ", 4) == 0
                   && r->rcpts && r->rcpts->nelts)
        {
            rcpt = r->rcpts->elts;
            ngx_mail_plus_spool_dsn(&rcpt[r->rcpts->nelts - 1], &v);
        }

        break;

    case 5:
        if (ngx_strncmp(p, "rcpt ", 5) == 0) {
            if (v.len == 0 && !r->as_is) {
                *reason = "bad \"rcpt\" line";
                return NGX_DECLINED;
            }

            r->nrcpts++;

            if (ngx_mail_plus_spool_address(&v) != NGX_OK && !r->as_is) {
                *reason = "bad \"rcpt\" line";
                return NGX_DECLINED;
            }

            if (r->rcpts == NULL) {
                break;
            }

            rcpt = ngx_array_push(r->rcpts);
            if (rcpt == NULL) {
                return NGX_ERROR;
            }

            ngx_memzero(rcpt, sizeof(ngx_mail_plus_queue_rcpt_t));
            rcpt->addr = v;

        } else if (ngx_strncmp(p, "body ", 5) == 0) {
            r->body_type = (v.len >= 8
                            && ngx_strncmp(v.data, "8BITMIME", 8) == 0)
                           ? NGX_MAIL_PLUS_BODY_8BITMIME
                           : NGX_MAIL_PLUS_BODY_7BIT;

        } else if (ngx_strncmp(p, "helo ", 5) == 0) {
            r->helo = v;
        }

        break;

    case 6:
        if (ngx_strncmp(p, "envid ", 6) == 0 && (v.len <= 100 || r->as_is)) {
            r->envid = v;

        } else if (ngx_strncmp(p, "login ", 6) == 0) {
            r->login = v;
        }

        break;

    case 7:
        if (ngx_strncmp(p, "sender ", 7) == 0) {
            r->sender = v;

            if (ngx_mail_plus_spool_address(&v) != NGX_OK) {
                *reason = "bad \"sender\" line";
                return NGX_DECLINED;
            }

        } else if (ngx_strncmp(p, "client ", 7) == 0) {
            r->client = v;
        }

        break;

    case 8:
        if (ngx_strncmp(p, "arrival ", 8) == 0) {
            r->arrival = ngx_atotm(v.data, v.len);
        }

        break;

    case 9:
        if (ngx_strncmp(p, "smtputf8 ", 9) == 0) {
            r->smtputf8 = (v.len == 3 && ngx_strncmp(v.data, "yes", 3) == 0);
            r->smtputf8_line = 1;
        }

        break;
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
ngx_mail_plus_spool_dsn(ngx_mail_plus_queue_rcpt_t *rcpt, ngx_str_t *v)
{
    u_char  *p, *last, *end;

    rcpt->dsn = *v;

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
            rcpt->notify_mask = ngx_mail_plus_spool_notify(&rcpt->notify);

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
 * a NOTIFY= value (RFC 3461 4.1): "NEVER", or a list of SUCCESS, FAILURE
 * and DELAY; the NGX_MAIL_PLUS_NOTIFY_* bits of the words known, in any
 * case; 0 when there are none
 */

ngx_uint_t
ngx_mail_plus_spool_notify(ngx_str_t *value)
{
    u_char      *p, *last, *word;
    size_t       len;
    ngx_uint_t   mask;

    if (value->len == 0) {
        return 0;
    }

    mask = 0;
    last = value->data + value->len;
    word = value->data;

    for (p = word; p <= last; p++) {

        if (p < last && *p != ',') {
            continue;
        }

        len = p - word;

        if (len == 5 && ngx_strncasecmp(word, (u_char *) "NEVER", 5) == 0) {
            mask |= NGX_MAIL_PLUS_NOTIFY_NEVER;

        } else if (len == 7
                   && ngx_strncasecmp(word, (u_char *) "SUCCESS", 7) == 0)
        {
            mask |= NGX_MAIL_PLUS_NOTIFY_SUCCESS;

        } else if (len == 7
                   && ngx_strncasecmp(word, (u_char *) "FAILURE", 7) == 0)
        {
            mask |= NGX_MAIL_PLUS_NOTIFY_FAILURE;

        } else if (len == 5
                   && ngx_strncasecmp(word, (u_char *) "DELAY", 5) == 0)
        {
            mask |= NGX_MAIL_PLUS_NOTIFY_DELAY;
        }

        word = p + 1;
    }

    return mask;
}


/* the room of the state file's first lines, or of a "done" line */

size_t
ngx_mail_plus_spool_state_size(ngx_str_t *addr)
{
    if (addr) {
        return sizeof("done " "\n") - 1 + addr->len;
    }

    return sizeof("attempts " "\n") - 1 + NGX_INT_T_LEN
           + sizeof("warned 1\n") - 1;
}


u_char *
ngx_mail_plus_spool_state_write(u_char *p, ngx_uint_t attempts,
    ngx_uint_t warned)
{
    return ngx_sprintf(p, "attempts %ui\n%s", attempts,
                       warned ? "warned 1\n" : "");
}


u_char *
ngx_mail_plus_spool_state_done(u_char *p, ngx_str_t *addr)
{
    return ngx_sprintf(p, "done %V\n", addr);
}


/*
 * "error <addr> <time> <dsn> <relay> <text>": the last error of a
 * recipient still to be tried; relay and text escaped, so that no reply
 * can end the line or start another one (docs/spool.md)
 */

size_t
ngx_mail_plus_spool_error_size(ngx_str_t *addr,
    ngx_mail_plus_queue_error_t *err)
{
    size_t  len;

    len = sizeof("error    \n") - 1 + addr->len + NGX_TIME_T_LEN + 32 + 1;

    if (err->escaped) {
        return len + err->relay.len + err->text.len;
    }

    return len + 4 * ngx_min(err->relay.len, NGX_MAIL_PLUS_QUEUE_ERROR_LEN)
           + 4 * ngx_min(err->text.len, NGX_MAIL_PLUS_QUEUE_ERROR_LEN);
}


u_char *
ngx_mail_plus_spool_error_write(u_char *p, ngx_str_t *addr,
    ngx_mail_plus_queue_error_t *err)
{
    ngx_str_t  dsn;

    dsn = err->dsn;

    if (!ngx_mail_plus_spool_status(dsn.data, dsn.len)) {
        ngx_str_set(&dsn, "4.0.0");
    }

    p = ngx_sprintf(p, "error %V %T %V ", addr, err->time, &dsn);

    if (err->relay.len == 0) {
        *p++ = '-';

    } else if (err->relay.len == 1 && err->relay.data[0] == '-') {
        p = ngx_cpymem(p, "\\x2d", 4);    /* not "none" */

    } else if (err->escaped) {
        p = ngx_cpymem(p, err->relay.data, err->relay.len);

    } else {
        p = ngx_mail_plus_spool_escape(p, &err->relay, 1);
    }

    *p++ = ' ';

    if (err->escaped && err->text.len) {
        p = ngx_cpymem(p, err->text.data, err->text.len);

    } else if (!err->escaped) {
        p = ngx_mail_plus_spool_escape(p, &err->text, 0);
    }

    *p++ = LF;

    return p;
}


/* an enhanced status code as the state file keeps it: "4.4.1" */

static ngx_uint_t
ngx_mail_plus_spool_status(u_char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > 32 || p[0] < '0' || p[0] > '9') {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if ((p[i] < '0' || p[i] > '9') && p[i] != '.') {
            return 0;
        }
    }

    return 1;
}


/*
 * at most NGX_MAIL_PLUS_QUEUE_ERROR_LEN bytes of src, escaped: printable
 * ASCII stays (the space too, unless "space"), "\" is "\\", any other
 * byte is "\xNN"
 */

static u_char *
ngx_mail_plus_spool_escape(u_char *p, ngx_str_t *src, ngx_uint_t space)
{
    u_char  *s, *last;

    static u_char  hex[] = "0123456789abcdef";

    if (src->len == 0) {
        return p;
    }

    s = src->data;
    last = s + ngx_min(src->len, NGX_MAIL_PLUS_QUEUE_ERROR_LEN);

    for ( /* void */ ; s < last; s++) {

        if (*s == '\\') {
            *p++ = '\\';
            *p++ = '\\';

        } else if (*s > ' ' && *s < 0x7f) {
            *p++ = *s;

        } else if (*s == ' ' && !space) {
            *p++ = ' ';

        } else {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[*s >> 4];
            *p++ = hex[*s & 0xf];
        }
    }

    return p;
}


static ngx_inline ngx_uint_t
ngx_mail_plus_spool_hex(u_char c)
{
    c = ngx_tolower(c);

    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}


/*
 * the number of bytes an escaped field stands for, -1 when it is not one
 * (a byte that should have been escaped, an escape that is not "\\" or
 * "\xNN", more than NGX_MAIL_PLUS_QUEUE_ERROR_LEN bytes)
 */

static ssize_t
ngx_mail_plus_spool_escaped(u_char *p, u_char *last, ngx_uint_t space)
{
    size_t  n;

    for (n = 0; p < last; n++) {

        if (*p == '\\') {
            if (last - p >= 2 && p[1] == '\\') {
                p += 2;
                continue;
            }

            if (last - p < 4 || p[1] != 'x'
                || !ngx_mail_plus_spool_hex(p[2])
                || !ngx_mail_plus_spool_hex(p[3]))
            {
                return -1;
            }

            p += 4;
            continue;
        }

        if (*p < ' ' || *p >= 0x7f || (*p == ' ' && space)) {
            return -1;
        }

        p++;
    }

    return (n <= NGX_MAIL_PLUS_QUEUE_ERROR_LEN) ? (ssize_t) n : -1;
}


/* the bytes of an escaped field checked by the reader, into dst */

u_char *
ngx_mail_plus_spool_unescape(u_char *dst, ngx_str_t *src)
{
    u_char  *p, *last, c, h;
    size_t   i;

    if (src->len == 0) {
        return dst;
    }

    p = src->data;
    last = p + src->len;

    while (p < last) {

        if (*p != '\\' || last - p < 2) {
            *dst++ = *p++;
            continue;
        }

        if (p[1] != 'x' || last - p < 4) {
            *dst++ = p[1];
            p += 2;
            continue;
        }

        c = 0;

        for (i = 2; i < 4; i++) {
            h = ngx_tolower(p[i]);
            c = c * 16 + ((h >= 'a') ? h - 'a' + 10 : h - '0');
        }

        *dst++ = c;
        p += 4;
    }

    return dst;
}


/*
 * the state file of earlier attempts:
 *
 *     attempts 3
 *     warned 1
 *     done b@example.com
 *     error c@example.com 1796661274 4.7.1 192.0.2.10:25 451 4.7.1 ...
 *
 * the recipients of r->rcpts named in "done" lines are marked done, those
 * named in "error" lines get the error; a line that cannot be read is
 * skipped (a state file lost costs a duplicate at most, never a message)
 */

void
ngx_mail_plus_spool_state(ngx_mail_plus_queue_record_t *r, u_char *data,
    size_t len)
{
    u_char                      *p, *last, *eol;
    ngx_str_t                    v;
    ngx_uint_t                   i;
    ngx_mail_plus_queue_rcpt_t  *rcpt;

    if (data == NULL) {
        return;
    }

    last = data + len;

    for (p = data; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, LF);
        if (eol == NULL) {
            break;
        }

        if (eol - p > 9 && ngx_strncmp(p, "attempts ", 9) == 0) {
            r->attempts = ngx_atoi(p + 9, eol - p - 9);

            if (r->attempts == (ngx_uint_t) NGX_ERROR) {
                r->attempts = 0;
            }

            continue;
        }

        if (eol - p == 8 && ngx_strncmp(p, "warned 1", 8) == 0) {
            r->warned = 1;
            continue;
        }

        if (eol - p > 6 && ngx_strncmp(p, "error ", 6) == 0 && r->rcpts) {
            ngx_mail_plus_spool_error(r, p + 6, eol);
            continue;
        }

        if (eol - p > 5 && ngx_strncmp(p, "done ", 5) == 0 && r->rcpts) {
            v.data = p + 5;
            v.len = eol - v.data;

            rcpt = r->rcpts->elts;

            for (i = 0; i < r->rcpts->nelts; i++) {
                if (rcpt[i].addr.len == v.len
                    && ngx_strncmp(rcpt[i].addr.data, v.data, v.len) == 0)
                {
                    rcpt[i].done = 1;
                }
            }
        }
    }
}


/*
 * an "error" line after its name, up to its line end: every field is
 * checked, a line that is not right is skipped
 */

static void
ngx_mail_plus_spool_error(ngx_mail_plus_queue_record_t *r, u_char *p,
    u_char *last)
{
    u_char                       *end;
    ngx_str_t                     addr, field[3];
    ngx_uint_t                    i;
    ngx_mail_plus_queue_rcpt_t   *rcpt;
    ngx_mail_plus_queue_error_t   err;

    /* the address, the time, the status code: no spaces in them */

    addr.data = p;
    addr.len = 0;

    for (i = 0; i < 4; i++) {
        end = ngx_strlchr(p, last, ' ');

        if (end == NULL || end == p) {
            return;
        }

        if (i == 0) {
            addr.len = end - p;

        } else {
            field[i - 1].data = p;
            field[i - 1].len = end - p;
        }

        p = end + 1;
    }

    if (ngx_mail_plus_spool_address(&addr) != NGX_OK) {
        return;
    }

    ngx_memzero(&err, sizeof(ngx_mail_plus_queue_error_t));

    err.time = ngx_atotm(field[0].data, field[0].len);

    if (err.time <= 0 || !ngx_mail_plus_spool_status(field[1].data,
                                                     field[1].len))
    {
        return;
    }

    err.dsn = field[1];
    err.escaped = 1;

    if (field[2].len != 1 || field[2].data[0] != '-') {
        if (ngx_mail_plus_spool_escaped(field[2].data,
                                        field[2].data + field[2].len, 1)
            < 0)
        {
            return;
        }

        err.relay = field[2];
    }

    if (ngx_mail_plus_spool_escaped(p, last, 0) < 0) {
        return;
    }

    err.text.data = p;
    err.text.len = last - p;

    rcpt = r->rcpts->elts;

    for (i = 0; i < r->rcpts->nelts; i++) {
        if (rcpt[i].addr.len == addr.len
            && ngx_strncmp(rcpt[i].addr.data, addr.data, addr.len) == 0)
        {
            rcpt[i].error = err;
        }
    }
}
