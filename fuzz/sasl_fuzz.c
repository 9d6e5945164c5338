
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the SASL decoding: the first input byte picks the
 * mechanism, the rest is a client's response line.  Oracles: base64 is
 * taken only when strict, and decodes to the length its text implies; a
 * PLAIN result is the authcid between the first two NULs and the password
 * is every byte after the second, up to the end (never cut at a NUL), the
 * authzid empty or the login; a CRAM-MD5 result is the text before the
 * last space and 32 hexadecimal digits.
 *
 * sources: router/ngx_mail_plus_sasl.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"

#include <assert.h>
#include <stdlib.h>


static ngx_uint_t
fuzz_b64(u_char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
           || (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
}


/* the decoded length of strict base64, or -1 */

static ssize_t
fuzz_expect(u_char *p, size_t len)
{
    size_t  i, pad;

    pad = 0;

    while (len && p[len - 1] == '=') {
        len--;
        pad++;
    }

    for (i = 0; i < len; i++) {
        if (!fuzz_b64(p[i])) {
            return -1;
        }
    }

    if (pad > 2 || len % 4 == 1 || (pad && (len + pad) % 4)) {
        return -1;
    }

    return len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char     *buf, *p, *nul, *end;
    ssize_t     expect;
    ngx_int_t   rc;
    ngx_str_t   text, login, passwd;

    if (size < 1) {
        return 0;
    }

    buf = malloc(size);
    assert(buf);
    ngx_memcpy(buf, data + 1, size - 1);

    text.data = buf;
    text.len = size - 1;

    expect = fuzz_expect(buf, text.len);

    switch (data[0] % 4) {

    case 0:
        rc = ngx_mail_plus_sasl_decode(&text);
        assert((rc == NGX_OK) == (expect >= 0));

        if (rc == NGX_OK) {
            assert(text.data == buf);
            assert((ssize_t) text.len == expect);
        }

        break;

    case 1:
        rc = ngx_mail_plus_sasl_plain(&text, &login, &passwd);

        if (expect < 0) {
            assert(rc == NGX_DECLINED);
            break;
        }

        end = buf + expect;

        if (rc == NGX_DECLINED) {

            /* fewer than two NULs, or an empty login */

            nul = ngx_strlchr(buf, end, '\0');
            assert(nul == NULL || ngx_strlchr(nul + 1, end, '\0') == NULL
                   || nul[1] == '\0');
            break;
        }

        assert(rc == NGX_OK || rc == NGX_ABORT);

        nul = ngx_strlchr(buf, end, '\0');
        assert(nul);
        assert(login.data == nul + 1);
        assert(login.len > 0);
        assert(ngx_strlchr(login.data, login.data + login.len, '\0') == NULL);
        assert(login.data[login.len] == '\0');
        assert(passwd.data == login.data + login.len + 1);
        assert(passwd.data + passwd.len == end);

        if (rc == NGX_OK) {
            assert(nul == buf
                   || ((size_t) (nul - buf) == login.len
                       && ngx_memcmp(buf, login.data, login.len) == 0));

        } else {
            assert(nul != buf);
        }

        break;

    case 2:
        rc = ngx_mail_plus_sasl_login(&text, &login);
        assert((rc == NGX_OK) == (expect >= 0));

        if (rc == NGX_OK) {
            assert((ssize_t) login.len == expect);
        }

        break;

    default:
        rc = ngx_mail_plus_sasl_cram_md5(&text, &login, &passwd);

        if (expect < 0) {
            assert(rc == NGX_DECLINED);
            break;
        }

        if (rc != NGX_OK) {
            assert(rc == NGX_DECLINED);
            break;
        }

        end = buf + expect;

        assert(login.data == buf && login.len > 0);
        assert(passwd.len == 32);
        assert(passwd.data == login.data + login.len + 1);
        assert(passwd.data + 32 == end);
        assert(login.data[login.len] == ' ');

        for (p = passwd.data; p < end; p++) {
            assert((*p >= '0' && *p <= '9') || ((*p | 0x20) >= 'a'
                                                 && (*p | 0x20) <= 'f'));
        }

        break;
    }

    free(buf);

    return 0;
}
