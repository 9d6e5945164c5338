
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for IMAP's modified UTF-7 (RFC 3501, section 5.1.3),
 * the mailbox names of the JMAP endpoint's IMAP client, both ways.  The
 * input is taken as a name from a server and as a name from a client.
 *
 * Oracles: a name the decoder takes is well-formed UTF-8 without a
 * control character, and encoding it gives the input back, byte for byte
 * (the decoder takes canonical encodings only); the encoder takes a name
 * exactly when ngx_mail_plus_imap_utf8_valid() does, gives printable
 * US-ASCII, and decoding that gives the input back.
 *
 * sources: jmap/ngx_mail_plus_imap_utf7.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_imap_client.h"

#include <assert.h>
#include <string.h>


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t       i;
    ngx_int_t    rc;
    ngx_str_t    in, out, back;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(4096, NULL);
    assert(pool);

    in.data = (u_char *) data;
    in.len = size;

    /* from a server */

    rc = ngx_mail_plus_imap_utf7_decode(pool, &in, &out);
    assert(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_OK) {
        assert(out.len <= 2 * in.len);
        assert(ngx_mail_plus_imap_utf8_valid(&out) == NGX_OK);

        rc = ngx_mail_plus_imap_utf7_encode(pool, &out, &back);
        assert(rc == NGX_OK);
        assert(back.len == in.len);
        assert(memcmp(back.data, in.data, in.len) == 0);
    }

    /* from a client */

    rc = ngx_mail_plus_imap_utf7_encode(pool, &in, &out);
    assert(rc == NGX_OK || rc == NGX_DECLINED);
    assert((rc == NGX_OK) == (ngx_mail_plus_imap_utf8_valid(&in) == NGX_OK));

    if (rc == NGX_OK) {
        for (i = 0; i < out.len; i++) {
            assert(out.data[i] >= 0x20 && out.data[i] <= 0x7e);
        }

        rc = ngx_mail_plus_imap_utf7_decode(pool, &out, &back);
        assert(rc == NGX_OK);
        assert(back.len == in.len);
        assert(memcmp(back.data, in.data, in.len) == 0);
    }

    ngx_destroy_pool(pool);

    return 0;
}
