
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the token mechanisms' responses: the first input
 * byte picks OAUTHBEARER or XOAUTH2, the rest is a client's response line
 * (base64).  Oracles: a response taken decodes from strict base64, ends
 * with its mechanism's "\x01\x01"; the token lies inside it, is not empty
 * and is a b64token (RFC 6750: the alphabet, then only "="); the user lies
 * inside it too and holds no "\x01"; OAUTHBEARER's starts with its GS2
 * flag "n," or "y,".
 *
 * sources: router/ngx_mail_plus_sasl.c router/ngx_mail_plus_sasl_token.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"

#include <assert.h>
#include <stdlib.h>


static int
fuzz_b64token(u_char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
           || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'
           || ch == '_' || ch == '~' || ch == '+' || ch == '/';
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char     *buf, *p, *end;
    ngx_int_t   rc;
    ngx_str_t   text, user, token;

    if (size < 1) {
        return 0;
    }

    buf = malloc(size);
    assert(buf);
    ngx_memcpy(buf, data + 1, size - 1);

    text.data = buf;
    text.len = size - 1;

    ngx_str_null(&user);
    ngx_str_null(&token);

    if (data[0] & 1) {
        rc = ngx_mail_plus_sasl_xoauth2(&text, &user, &token);

    } else {
        rc = ngx_mail_plus_sasl_oauthbearer(&text, &user, &token);
    }

    assert(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_OK) {
        end = text.data + text.len;

        assert(text.data == buf);
        assert(text.len >= 2 && end[-1] == '\x01' && end[-2] == '\x01');

        if (data[0] & 1) {
            assert(ngx_strncmp(buf, "user=", 5) == 0);

        } else {
            assert((buf[0] == 'n' || buf[0] == 'y') && buf[1] == ',');
        }

        assert(token.len > 0);
        assert(token.data > buf && token.data + token.len <= end);

        for (p = token.data; p < token.data + token.len; p++) {
            if (*p == '=') {
                break;
            }

            assert(fuzz_b64token(*p));
        }

        assert(p > token.data);

        for ( /* void */ ; p < token.data + token.len; p++) {
            assert(*p == '=');
        }

        if (user.len) {
            assert(user.data >= buf && user.data + user.len <= end);
            assert(ngx_strlchr(user.data, user.data + user.len, '\x01')
                   == NULL);
        }
    }

    free(buf);

    return 0;
}
