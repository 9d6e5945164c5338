
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the LDAP source's filter templates: the input is a
 * template, a line feed, and a login.  The template goes through the
 * check that "nginx -t" makes; a template it lets through is filled in
 * with the login, and with a harmless login ("x") to compare.
 *
 * Oracles: the filter is as long as ngx_mail_plus_dir_ldap_filter_len()
 * said; it holds no control byte, and no byte above 0x7e but the
 * template's own (UTF-8 written in it); every "\" is followed by two hex
 * digits; its structure (the "(", ")" and "*" outside escapes, in order)
 * is the same whatever the login, so that no login can add a wildcard,
 * close an assertion or open another one; and the escapes where the login
 * went decode back to the login.
 *
 * sources: directory/ngx_mail_plus_dir_ldap_filter.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_dir_ldap.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>


static ngx_uint_t
fuzz_hex(u_char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    assert(c >= 'a' && c <= 'f');

    return c - 'a' + 10;
}


/*
 * the structure of a filter: "(", ")", "*" outside escapes ("=" in a value
 * is a byte of the value)
 */

static size_t
fuzz_skeleton(u_char *p, size_t len, u_char *out)
{
    u_char  *o, *last;

    o = out;
    last = p + len;

    while (p < last) {

        assert(*p >= 0x20 && *p != 0x7f);

        if (*p == '\\') {
            assert(last - p >= 3);
            (void) fuzz_hex(p[1]);
            (void) fuzz_hex(p[2]);
            p += 3;
            continue;
        }

        if (*p == '(' || *p == ')' || *p == '*') {
            *o++ = *p;
        }

        p++;
    }

    return o - out;
}


/* the bytes a filter's value stands for, escapes decoded */

static size_t
fuzz_decode(u_char *p, size_t len, u_char *out)
{
    u_char  *o, *last;

    o = out;
    last = p + len;

    while (p < last) {
        if (*p == '\\') {
            *o++ = (u_char) (fuzz_hex(p[1]) * 16 + fuzz_hex(p[2]));
            p += 3;
            continue;
        }

        *o++ = *p++;
    }

    return o - out;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char     *nl, *f, *fx, *s, *sx, *d, *u, *last;
    size_t      len, lenx, slen, sxlen, dlen, pos;
    ngx_str_t   tpl, login, harmless;

    nl = memchr(data, '\n', size);
    if (nl == NULL) {
        tpl.data = (u_char *) data;
        tpl.len = size;
        (void) ngx_mail_plus_dir_ldap_filter_check(&tpl);
        return 0;
    }

    tpl.data = (u_char *) data;
    tpl.len = nl - (u_char *) data;
    login.data = nl + 1;
    login.len = size - tpl.len - 1;

    if (ngx_mail_plus_dir_ldap_filter_check(&tpl) != NULL) {
        return 0;
    }

    ngx_str_set(&harmless, "x");

    len = ngx_mail_plus_dir_ldap_filter_len(&tpl, &login);
    lenx = ngx_mail_plus_dir_ldap_filter_len(&tpl, &harmless);

    f = malloc(len + 1);
    fx = malloc(lenx + 1);
    s = malloc(len + 1);
    sx = malloc(lenx + 1);
    d = malloc(len + 1);
    assert(f && fx && s && sx && d);

    assert((size_t) (ngx_mail_plus_dir_ldap_filter(f, &tpl, &login) - f)
           == len);
    assert((size_t) (ngx_mail_plus_dir_ldap_filter(fx, &tpl, &harmless) - fx)
           == lenx);

    slen = fuzz_skeleton(f, len, s);
    sxlen = fuzz_skeleton(fx, lenx, sx);

    assert(slen == sxlen && memcmp(s, sx, slen) == 0);

    /* a byte above 0x7e in the filter is the template's, never the login's */

    for (u = tpl.data, last = tpl.data + tpl.len; u < last; u++) {
        if (*u > 0x7e) {
            break;
        }
    }

    if (u == last) {
        for (u = f, last = f + len; u < last; u++) {
            assert(*u <= 0x7e);
        }
    }

    /*
     * the login decoded: with a template of one "%u" and no other "%" or
     * "\\", the decoded filter is the template's text around the login
     */

    last = tpl.data + tpl.len;
    u = memchr(tpl.data, '%', tpl.len);

    if (u && memchr(tpl.data, '\\', tpl.len) == NULL
        && u + 1 < last && u[1] == 'u'
        && memchr(u + 2, '%', last - u - 2) == NULL)
    {
        pos = u - tpl.data;
        dlen = fuzz_decode(f, len, d);

        assert(dlen == tpl.len - 2 + login.len);
        assert(memcmp(d, tpl.data, pos) == 0);
        assert(memcmp(d + pos, login.data, login.len) == 0);
        assert(memcmp(d + pos + login.len, u + 2, last - u - 2) == 0);
    }

    free(f);
    free(fx);
    free(s);
    free(sx);
    free(d);

    return 0;
}
