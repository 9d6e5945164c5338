
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the auth_http endpoint's reading of a request: the
 * input is the header block of a request as nginx's HTTP parser would have
 * cut it ("Name: value" lines), each header goes to
 * ngx_http_mail_plus_auth_header() and the result to
 * ngx_http_mail_plus_auth_request(), as the endpoint does.
 *
 * Oracles: a decoded login or password is never longer than what was
 * sent, and %-escaping it again and decoding reads back the same bytes;
 * the protocol is one of three; an unauthenticated SMTP login lies inside
 * Auth-SMTP-To.  The decoder also meets the round trip on the raw input.
 *
 * sources: http/ngx_http_mail_plus_parse.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_http_mail_plus_parse.h"

#include <assert.h>
#include <stdlib.h>
#include <strings.h>


/* every byte "%XX", then decoded: the same bytes */

static void
fuzz_round_trip(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char     *e, *d;
    size_t      i, len;
    ngx_str_t   escaped;

    static u_char  hex[] = "0123456789ABCDEF";

    e = ngx_pnalloc(pool, 3 * s->len + 1);
    d = ngx_pnalloc(pool, 3 * s->len + 1);
    assert(e != NULL && d != NULL);

    for (i = 0; i < s->len; i++) {
        e[3 * i] = '%';
        e[3 * i + 1] = hex[s->data[i] >> 4];
        e[3 * i + 2] = hex[s->data[i] & 0xf];
    }

    escaped.data = e;
    escaped.len = 3 * s->len;

    assert(ngx_http_mail_plus_unescape(&escaped, d, &len) == NGX_OK);
    assert(len == s->len);
    assert(ngx_memcmp(d, s->data, len) == 0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                               *err;
    u_char                             *p, *end, *eol, *colon, *q, *copy;
    size_t                              len;
    ngx_int_t                           rc;
    ngx_str_t                           key, value, raw;
    ngx_pool_t                         *pool;
    ngx_http_mail_plus_auth_request_t   ar;

    pool = ngx_create_pool(1024, NULL);
    assert(pool != NULL);

    copy = ngx_pnalloc(pool, size + 1);
    assert(copy != NULL);
    ngx_memcpy(copy, data, size);

    /* the decoder on the raw input: decoded, never longer */

    raw.data = copy;
    raw.len = size;

    q = ngx_pnalloc(pool, size + 1);
    assert(q != NULL);

    if (ngx_http_mail_plus_unescape(&raw, q, &len) == NGX_OK) {
        assert(len <= size);
    }

    fuzz_round_trip(pool, &raw);

    ngx_memzero(&ar, sizeof(ngx_http_mail_plus_auth_request_t));

    p = copy;
    end = copy + size;
    rc = NGX_OK;

    for ( /* void */ ; p < end && rc == NGX_OK; p = eol + 1) {

        eol = ngx_strlchr(p, end, LF);
        if (eol == NULL) {
            eol = end;
        }

        q = eol;

        if (q > p && q[-1] == CR) {
            q--;
        }

        colon = ngx_strlchr(p, q, ':');
        if (colon == NULL) {
            continue;
        }

        key.data = p;
        key.len = colon - p;

        for (colon++; colon < q && *colon == ' '; colon++) { /* void */ }

        value.data = colon;
        value.len = q - colon;

        rc = ngx_http_mail_plus_auth_header(&ar, &key, &value);
    }

    if (rc != NGX_OK) {
        ngx_destroy_pool(pool);
        return 0;
    }

    err = NULL;
    rc = ngx_http_mail_plus_auth_request(&ar, pool, &err);

    if (rc == NGX_DECLINED) {
        assert(err != NULL);
    }

    if (rc == NGX_OK) {
        assert(ar.proto <= 2);

        if (ar.none) {
            if (ar.login.len) {
                assert(ar.login.data >= ar.rcpt.data);
                assert(ar.login.data + ar.login.len
                       <= ar.rcpt.data + ar.rcpt.len);
            }

        } else {
            assert(ar.login.len <= ar.user.len);
            assert(ar.password.len <= ar.pass.len);

            fuzz_round_trip(pool, &ar.login);
            fuzz_round_trip(pool, &ar.password);
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
