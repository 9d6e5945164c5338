
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the reader of a queue file's records: the
 * envelope and the state file (a queue file can be corrupt, or written
 * by hand), and for its writer.  The input is a queue file, optionally
 * followed by a line "--state--" and a state file.  The first byte says
 * how much of the file the reader got (all of it, or a prefix: a read cut
 * short or the 64 MB cap).  Whatever the bytes, the reader either refuses the file
 * with a reason, or hands back an envelope whose every field lies inside
 * the buffer, whose addresses hold no space or control byte, with at
 * least one recipient and a content offset inside the file.  The same
 * bytes read as the queue API shows a file never fail.  An
 * envelope read is then written again by the writer and read back: the
 * same fields come out.  The state file's "error" lines read are inside
 * its buffer, printable ASCII and bounded; a state written again from
 * them, and an error whose reply is the state file's raw bytes, read back
 * the same: the escaping is reversible and no reply makes a second line.
 *
 * sources: queue/ngx_mail_plus_spool_record.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_queue.h"
#include "ngx_mail_plus_queue_spool.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>


#define FUZZ_ID  "6B15FD6780009FFFFF1009"


/* the nginx core functions the reader calls, beyond the shim's */

/* as nginx's: s2 is n + 1 bytes long, its first byte compared first */

u_char *
ngx_strlcasestrn(u_char *s1, u_char *last, u_char *s2, size_t n)
{
    ngx_uint_t  c1, c2;

    c2 = (ngx_uint_t) *s2++;
    c2 = ngx_tolower(c2);
    last -= n;

    do {
        do {
            if (s1 >= last) {
                return NULL;
            }

            c1 = (ngx_uint_t) *s1++;
            c1 = ngx_tolower(c1);

        } while (c1 != c2);

    } while (ngx_strncasecmp(s1, s2, n) != 0);

    return --s1;
}


/* the formats the writer uses: %s, %V, %T, %ui */

u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    va_list     args;
    ngx_str_t  *v;

    va_start(args, fmt);

    while (*fmt) {
        if (*fmt != '%') {
            *buf++ = *fmt++;
            continue;
        }

        fmt++;

        switch (*fmt++) {

        case 's':
            buf += sprintf((char *) buf, "%s", va_arg(args, char *));
            break;

        case 'V':
            v = va_arg(args, ngx_str_t *);

            if (v->len) {
                buf = ngx_cpymem(buf, v->data, v->len);
            }

            break;

        case 'T':
            buf += sprintf((char *) buf, "%lld",
                           (long long) va_arg(args, time_t));
            break;

        case 'u':
            fmt++;
            buf += sprintf((char *) buf, "%lu",
                           (unsigned long) va_arg(args, ngx_uint_t));
            break;

        default:
            assert(0);
        }
    }

    va_end(args);

    return buf;
}


static void
fuzz_equal(ngx_str_t *a, ngx_str_t *b)
{
    assert(a->len == b->len);
    assert(a->len == 0 || ngx_memcmp(a->data, b->data, a->len) == 0);
}


static void
fuzz_inside(ngx_str_t *s, u_char *buf, size_t len)
{
    if (s->len == 0) {
        return;
    }

    assert(s->data >= buf && s->data + s->len <= buf + len);
}


static void
fuzz_address(ngx_str_t *s, u_char *buf, size_t len)
{
    size_t  i;

    fuzz_inside(s, buf, len);

    for (i = 0; i < s->len; i++) {
        assert(s->data[i] > ' ' && s->data[i] != 0x7f);
    }
}


/* the lines as the queue API shows them: never an error but no memory */

static void
fuzz_show(ngx_pool_t *pool, u_char *buf, size_t len)
{
    ngx_array_t                    rcpts;
    ngx_mail_plus_queue_record_t   r;

    ngx_memzero(&r, sizeof(ngx_mail_plus_queue_record_t));
    assert(ngx_array_init(&rcpts, pool, 4,
                          sizeof(ngx_mail_plus_queue_rcpt_t)) == NGX_OK);
    r.rcpts = &rcpts;

    assert(ngx_mail_plus_spool_show(&r, buf, len) == NGX_OK);

    fuzz_inside(&r.sender, buf, len);
    fuzz_inside(&r.client, buf, len);
    assert(rcpts.nelts <= r.nrcpts);
}


/* an envelope read, written again and read back: the same fields */

static void
fuzz_round_trip(ngx_pool_t *pool, ngx_mail_plus_queue_record_t *r)
{
    char                          *reason;
    u_char                        *buf, *last;
    off_t                          body;
    size_t                         len;
    ngx_int_t                      rc;
    ngx_str_t                     *addr, *dsn;
    ngx_uint_t                     i;
    ngx_mail_plus_queue_rcpt_t    *rcpt, *rcpt2;
    ngx_mail_plus_queue_record_t   r2;
    ngx_mail_plus_queue_envelope_t env;

    ngx_memzero(&env, sizeof(ngx_mail_plus_queue_envelope_t));

    env.sender = r->sender;
    env.client = r->client;
    env.helo = r->helo;
    env.login = r->login;
    env.body = r->body_type;
    env.ret = r->ret;
    env.envid = r->envid;
    env.smtputf8 = r->smtputf8;

    env.recipients = ngx_palloc(pool, sizeof(ngx_array_t));
    env.dsn = ngx_palloc(pool, sizeof(ngx_array_t));
    assert(env.recipients && env.dsn);

    assert(ngx_array_init(env.recipients, pool, r->rcpts->nelts,
                          sizeof(ngx_str_t)) == NGX_OK);
    assert(ngx_array_init(env.dsn, pool, r->rcpts->nelts,
                          sizeof(ngx_str_t)) == NGX_OK);

    rcpt = r->rcpts->elts;

    for (i = 0; i < r->rcpts->nelts; i++) {
        addr = ngx_array_push(env.recipients);
        dsn = ngx_array_push(env.dsn);
        assert(addr && dsn);

        *addr = rcpt[i].addr;
        *dsn = rcpt[i].dsn;
    }

    len = ngx_mail_plus_spool_envelope_size(&env);
    buf = malloc(len);
    assert(buf);

    last = ngx_mail_plus_spool_envelope_write(buf, (u_char *) FUZZ_ID,
                                              r->arrival, &env, &body);
    assert((size_t) (last - buf) <= len);
    assert(ngx_memcmp(buf + body, ngx_mail_plus_spool_body_value(env.body),
                      8) == 0);

    ngx_memzero(&r2, sizeof(ngx_mail_plus_queue_record_t));

    r2.rcpts = ngx_palloc(pool, sizeof(ngx_array_t));
    assert(r2.rcpts);
    assert(ngx_array_init(r2.rcpts, pool, 4,
                          sizeof(ngx_mail_plus_queue_rcpt_t)) == NGX_OK);

    rc = ngx_mail_plus_spool_envelope(&r2, (u_char *) FUZZ_ID, buf,
                                      last - buf, last - buf, &reason);

    assert(rc == NGX_OK);
    assert(r2.arrival == r->arrival);
    assert(r2.body_type == (r->body_type == NGX_MAIL_PLUS_BODY_8BITMIME
                            ? NGX_MAIL_PLUS_BODY_8BITMIME
                            : NGX_MAIL_PLUS_BODY_7BIT));
    assert(r2.smtputf8 == r->smtputf8);
    assert(r2.nrcpts == r->rcpts->nelts);
    fuzz_equal(&r2.sender, &r->sender);
    fuzz_equal(&r2.ret, &r->ret);
    fuzz_equal(&r2.envid, &r->envid);

    rcpt2 = r2.rcpts->elts;

    /* NOTIFY= and ORCPT= may come from an earlier of two "dsn" lines */

    for (i = 0; i < r->rcpts->nelts; i++) {
        fuzz_equal(&rcpt2[i].addr, &rcpt[i].addr);
        fuzz_equal(&rcpt2[i].dsn, &rcpt[i].dsn);
        assert(rcpt2[i].notify_mask
               == ngx_mail_plus_spool_notify(&rcpt2[i].notify));
    }

    free(buf);
}


/* an escaped field read: printable ASCII, bounded once unescaped */

static void
fuzz_escaped(ngx_str_t *s, u_char *buf, size_t len, ngx_uint_t space)
{
    u_char  *dst, *last;
    size_t   i;

    fuzz_inside(s, buf, len);

    for (i = 0; i < s->len; i++) {
        assert(s->data[i] >= ' ' && s->data[i] < 0x7f);
        assert(!space || s->data[i] != ' ');
    }

    dst = malloc(s->len + 1);
    assert(dst);

    last = ngx_mail_plus_spool_unescape(dst, s);
    assert(last - dst <= NGX_MAIL_PLUS_QUEUE_ERROR_LEN);

    free(dst);
}


/*
 * the state read written again, and an error of raw bytes: read back,
 * the same errors, the raw bytes unescaped as they were (cut)
 */

static void
fuzz_state_round_trip(ngx_pool_t *pool, ngx_mail_plus_queue_record_t *r,
    u_char *raw, size_t rlen)
{
    u_char                        *buf, *p, *dst, *end;
    size_t                         len, cut;
    ngx_uint_t                     i;
    ngx_array_t                    rcpts;
    ngx_mail_plus_queue_rcpt_t    *rcpt, *rcpt2;
    ngx_mail_plus_queue_error_t    err;
    ngx_mail_plus_queue_record_t   r2;

    rcpt = r->rcpts->elts;

    ngx_memzero(&err, sizeof(ngx_mail_plus_queue_error_t));
    err.time = 1796661274;
    err.text.data = raw;
    err.text.len = rlen;
    err.relay = err.text;
    ngx_str_set(&err.dsn, "4.4.1");

    len = ngx_mail_plus_spool_state_size(NULL)
          + ngx_mail_plus_spool_error_size(&rcpt[0].addr, &err);

    for (i = 0; i < r->rcpts->nelts; i++) {
        len += ngx_mail_plus_spool_state_size(&rcpt[i].addr);

        if (rcpt[i].error.time) {
            len += ngx_mail_plus_spool_error_size(&rcpt[i].addr,
                                                  &rcpt[i].error);
        }
    }

    buf = malloc(len);
    assert(buf);

    p = ngx_mail_plus_spool_state_write(buf, r->attempts, r->warned);

    for (i = 0; i < r->rcpts->nelts; i++) {
        if (rcpt[i].done) {
            p = ngx_mail_plus_spool_state_done(p, &rcpt[i].addr);

        } else if (rcpt[i].error.time) {
            p = ngx_mail_plus_spool_error_write(p, &rcpt[i].addr,
                                                &rcpt[i].error);
        }
    }

    assert((size_t) (p - buf) <= len);

    ngx_memzero(&r2, sizeof(ngx_mail_plus_queue_record_t));
    assert(ngx_array_init(&rcpts, pool, r->rcpts->nelts,
                          sizeof(ngx_mail_plus_queue_rcpt_t)) == NGX_OK);
    r2.rcpts = &rcpts;

    for (i = 0; i < r->rcpts->nelts; i++) {
        rcpt2 = ngx_array_push(&rcpts);
        assert(rcpt2);
        ngx_memzero(rcpt2, sizeof(ngx_mail_plus_queue_rcpt_t));
        rcpt2->addr = rcpt[i].addr;
    }

    ngx_mail_plus_spool_state(&r2, buf, p - buf);

    rcpt2 = rcpts.elts;

    assert(r2.attempts == r->attempts);

    for (i = 0; i < r->rcpts->nelts; i++) {
        assert(rcpt2[i].done == rcpt[i].done);

        if (rcpt[i].done) {
            continue;
        }

        /* the last of the lines of one address wins */

        assert(rcpt2[i].error.time != 0 || rcpt[i].error.time == 0);
    }

    /*
     * one line, no control byte (the address may hold UTF-8, as in a
     * "done" line; the rest is printable ASCII), then the raw bytes back
     */

    end = ngx_mail_plus_spool_error_write(p, &rcpt[0].addr, &err);
    assert((size_t) (end - buf) <= len);
    assert(end[-1] == LF);
    assert(memchr(p, LF, end - p - 1) == NULL);

    for (dst = p; dst < end - 1; dst++) {
        assert(*dst >= ' ' && *dst != 0x7f);
    }

    ngx_memzero(&r2, sizeof(ngx_mail_plus_queue_record_t));
    r2.rcpts = &rcpts;

    for (i = 0; i < rcpts.nelts; i++) {
        ngx_memzero(&rcpt2[i].error, sizeof(ngx_mail_plus_queue_error_t));
        rcpt2[i].done = 0;
    }

    ngx_mail_plus_spool_state(&r2, p, end - p);

    assert(rcpt2[0].error.time == err.time);

    cut = ngx_min(rlen, NGX_MAIL_PLUS_QUEUE_ERROR_LEN);

    dst = malloc(cut + 1);
    assert(dst);

    end = ngx_mail_plus_spool_unescape(dst, &rcpt2[0].error.text);
    assert((size_t) (end - dst) == cut);
    assert(cut == 0 || ngx_memcmp(dst, raw, cut) == 0);

    if (cut) {
        end = ngx_mail_plus_spool_unescape(dst, &rcpt2[0].error.relay);
        assert((size_t) (end - dst) == cut);
        assert(ngx_memcmp(dst, raw, cut) == 0);
    }

    free(dst);
    free(buf);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                          *reason;
    u_char                        *buf, *state, *sep;
    off_t                          fsize;
    size_t                         len, slen, got;
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_pool_t                    *pool;
    ngx_array_t                    rcpts;
    ngx_mail_plus_queue_rcpt_t    *rcpt;
    ngx_mail_plus_queue_record_t   r;

    if (size < 1) {
        return 0;
    }

    got = data[0];
    data++;
    size--;

    /* the file, and the state file after "--state--" */

    sep = ngx_strlcasestrn((u_char *) data, (u_char *) data + size,
                           (u_char *) "\n--state--\n", 10);

    len = sep ? (size_t) (sep + 1 - data) : size;
    slen = sep ? size - len - 10 : 0;

    /* copies of their own size, so that ASan sees every overread */

    buf = malloc(len ? len : 1);
    state = malloc(slen ? slen : 1);
    ngx_memcpy(buf, data, len);
    ngx_memcpy(state, sep ? sep + 11 : (u_char *) "", slen);

    /* the reader got all of the file, or a prefix of it */

    fsize = len;

    if (got & 1) {
        fsize += 1 + (got >> 1);
    }

    pool = ngx_create_pool(1024, NULL);
    assert(pool);

    ngx_memzero(&r, sizeof(ngx_mail_plus_queue_record_t));
    assert(ngx_array_init(&rcpts, pool, 4,
                          sizeof(ngx_mail_plus_queue_rcpt_t)) == NGX_OK);
    r.rcpts = &rcpts;

    fuzz_show(pool, buf, len);

    reason = NULL;

    rc = ngx_mail_plus_spool_envelope(&r, (u_char *) FUZZ_ID, buf, len, fsize,
                                      &reason);

    if (rc == NGX_DECLINED) {
        assert(reason != NULL);
        goto done;
    }

    assert(rc == NGX_OK);

    assert(rcpts.nelts > 0 && rcpts.nelts == r.nrcpts);
    assert(r.arrival > 0);
    assert(r.body > 0 && r.body <= (off_t) len);
    assert(r.size == fsize - r.body);

    fuzz_address(&r.sender, buf, len);
    fuzz_inside(&r.ret, buf, len);
    fuzz_inside(&r.envid, buf, len);
    fuzz_inside(&r.client, buf, len);
    fuzz_inside(&r.helo, buf, len);
    fuzz_inside(&r.login, buf, len);

    ngx_mail_plus_spool_state(&r, slen ? state : NULL, slen);

    rcpt = rcpts.elts;

    for (i = 0; i < rcpts.nelts; i++) {
        assert(rcpt[i].addr.len > 0);
        fuzz_address(&rcpt[i].addr, buf, len);
        fuzz_inside(&rcpt[i].dsn, buf, len);
        fuzz_inside(&rcpt[i].notify, buf, len);
        fuzz_inside(&rcpt[i].orcpt, buf, len);
        assert((rcpt[i].notify_mask & ~0x0f) == 0);

        if (rcpt[i].error.time) {
            assert(rcpt[i].error.time > 0);
            fuzz_inside(&rcpt[i].error.dsn, state, slen);
            fuzz_escaped(&rcpt[i].error.relay, state, slen, 1);
            fuzz_escaped(&rcpt[i].error.text, state, slen, 0);
        }
    }

    fuzz_round_trip(pool, &r);
    fuzz_state_round_trip(pool, &r, state, slen);

done:

    ngx_destroy_pool(pool);
    free(state);
    free(buf);

    return 0;
}
