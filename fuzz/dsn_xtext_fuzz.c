
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the addresses and the DSN parameters of MAIL and
 * RCPT (RFC 3461: RET, ENVID, NOTIFY, ORCPT and its xtext), and for the
 * check of a local recipient's local part.  The first byte chooses MAIL or
 * RCPT and whether "FROM:<" or "TO:<" is put in front; the rest is the
 * argument as the session passes it.
 *
 * Oracles on every accepted argument: the address lies in the argument,
 * is at most 256 bytes and holds no control byte, escaped or not; its
 * domain is what follows its last "@" (the session and the delivery find
 * the same one) and holds no quote, backslash or "@"; the non-ASCII flag
 * is right; ENVID and ORCPT are xtext whose decoding, encoded again and
 * decoded, reads back the same; a local part that the check lets through
 * holds no "@", "%", "!" or control byte.
 *
 * sources: smtp/ngx_mail_plus_smtp_parse.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"

#include <assert.h>
#include <stdlib.h>


static ngx_uint_t
fuzz_hex(u_char c)
{
    return (c >= '0' && c <= '9') ? (ngx_uint_t) (c - '0')
                                   : (ngx_uint_t) (c - 'A' + 10);
}


/* xtext to bytes; every "+" is followed by two upper case hex digits */

static size_t
fuzz_xtext_decode(u_char *p, size_t len, u_char *out)
{
    u_char  *o, *last;

    o = out;
    last = p + len;

    while (p < last) {

        if (*p == '+') {
            assert(last - p >= 3);
            assert((p[1] >= '0' && p[1] <= '9')
                   || (p[1] >= 'A' && p[1] <= 'F'));
            assert((p[2] >= '0' && p[2] <= '9')
                   || (p[2] >= 'A' && p[2] <= 'F'));

            *o++ = (u_char) (fuzz_hex(p[1]) * 16 + fuzz_hex(p[2]));
            p += 3;
            continue;
        }

        assert(*p >= '!' && *p <= '~' && *p != '=');

        *o++ = *p++;
    }

    return o - out;
}


static size_t
fuzz_xtext_encode(u_char *p, size_t len, u_char *out)
{
    u_char  *o, *last;

    static u_char  hex[] = "0123456789ABCDEF";

    o = out;

    for (last = p + len; p < last; p++) {

        if (*p >= '!' && *p <= '~' && *p != '+' && *p != '=') {
            *o++ = *p;
            continue;
        }

        *o++ = '+';
        *o++ = hex[*p >> 4];
        *o++ = hex[*p & 0xf];
    }

    return o - out;
}


static void
fuzz_xtext(ngx_str_t *v, size_t max)
{
    u_char  *d1, *e, *d2;
    size_t   n1, ne, n2;

    assert(v->len <= max);

    d1 = malloc(v->len + 1);
    e = malloc(3 * v->len + 1);
    d2 = malloc(3 * v->len + 1);

    n1 = fuzz_xtext_decode(v->data, v->len, d1);
    ne = fuzz_xtext_encode(d1, n1, e);
    n2 = fuzz_xtext_decode(e, ne, d2);

    assert(n1 == n2);
    assert(ngx_memcmp(d1, d2, n1) == 0);

    free(d2);
    free(e);
    free(d1);
}


static void
fuzz_path(ngx_str_t *arg, ngx_uint_t rcpt)
{
    u_char                     *p, *last, *at;
    ngx_int_t                   rc;
    ngx_str_t                   v;
    ngx_uint_t                  utf8;
    ngx_mail_plus_smtp_path_t   path;

    rc = ngx_mail_plus_smtp_parse_path(arg, rcpt, &path);

    if (rc == NGX_MAIL_PLUS_SMTP_BAD_PARAM) {
        assert(path.param.data >= arg->data);
        assert(path.param.data + path.param.len <= arg->data + arg->len);
        return;
    }

    if (rc != NGX_OK) {
        assert(rc == NGX_ERROR);
        return;
    }

    assert(path.addr.len <= NGX_MAIL_PLUS_SMTP_MAX_PATH);

    if (path.addr.len) {
        assert(path.addr.data >= arg->data);
        assert(path.addr.data + path.addr.len <= arg->data + arg->len);
    }

    last = path.addr.data + path.addr.len;
    utf8 = 0;
    at = NULL;

    for (p = path.addr.data; p < last; p++) {
        assert(*p >= 0x20 && *p != 0x7f);

        if (*p >= 0x80) {
            utf8 = 1;
        }

        if (*p == '@') {
            at = p;
        }
    }

    assert(utf8 == path.utf8);

    /* the domain is after the last "@", as the delivery finds it */

    if (path.domain.len) {
        assert(at != NULL);
        assert(path.domain.data == at + 1);
        assert(path.domain.data + path.domain.len == last);

        for (p = path.domain.data; p < last; p++) {
            assert(*p != '"' && *p != '\\' && *p != '@' && *p != ' ');
        }

    } else {
        assert(!rcpt || path.addr.len == sizeof("postmaster") - 1);
    }

    if (ngx_mail_plus_recipient_local_part(&path.addr) == NGX_OK) {
        for (p = path.addr.data; p < (at ? at : last); p++) {
            assert(*p != '@' && *p != '%' && *p != '!');
        }
    }

    if (path.envid.len) {
        assert(!rcpt);
        fuzz_xtext(&path.envid, 100);
    }

    if (path.orcpt.len) {
        assert(rcpt);

        p = ngx_strlchr(path.orcpt.data, path.orcpt.data + path.orcpt.len, ';');
        assert(p != NULL && p != path.orcpt.data);

        v.data = p + 1;
        v.len = path.orcpt.data + path.orcpt.len - v.data;

        fuzz_xtext(&v, 500);
    }

    if (path.ret.len) {
        assert(path.ret.len == 4);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *buf;
    size_t       plen;
    ngx_str_t    arg;
    ngx_uint_t   rcpt, prefix;

    if (size == 0) {
        return 0;
    }

    rcpt = data[0] & 1;
    prefix = data[0] & 2;

    data++;
    size--;

    plen = prefix ? (rcpt ? sizeof("TO:<") - 1 : sizeof("FROM:<") - 1) : 0;

    /* a copy of its own size: ASan sees every read past the end */

    buf = malloc(plen + size + 1);

    if (prefix) {
        ngx_memcpy(buf, rcpt ? "TO:<" : "FROM:<", plen);
    }

    ngx_memcpy(buf + plen, data, size);

    arg.data = buf;
    arg.len = plen + size;

    fuzz_path(&arg, rcpt);

    /* the local part check on its own, on any bytes */

    (void) ngx_mail_plus_recipient_local_part(&arg);

    free(buf);

    return 0;
}
