
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the MIME work of Email/get: the input is three
 * pieces separated by a line "%%" (a BODYSTRUCTURE as an IMAP server
 * sends it, a header block, a part's bytes), after two control bytes
 * (which charset and transfer encoding the bytes are said to be in) and
 * two of maxBodyValueBytes.
 *
 *   - the BODYSTRUCTURE is read by the IMAP response reader inside a
 *     FETCH response, made a tree of parts, RFC 8621 4.1.4's textBody,
 *     htmlBody and attachments drawn from it, and each written as JSON;
 *   - every field of the header block in every form, the "headers" list
 *     and "header:" properties;
 *   - the bytes decoded (transfer encoding, charset by iconv) to a body
 *     value cut at the limit, and a preview; INTERNALDATE read.
 *
 * Every JSON value made must exist (jansson refuses a string that is not
 * UTF-8, so a NULL is bytes that slipped through unchecked), a body value
 * must be no longer than the limit, a preview at most 256 characters.
 * The seeds in fuzz/corpus/jmap_mime/ are Dovecot's BODYSTRUCTUREs of
 * real messages (nested multiparts, message/rfc822, RFC 2231 names) with
 * their headers (encoded words in many charsets), and broken ones.
 *
 * sources: jmap/ngx_http_mail_plus_jmap_mime.c jmap/ngx_mail_plus_imap_parse.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_imap_parse.h"
#include "ngx_http_mail_plus_jmap_mime.h"

#include <assert.h>
#include <string.h>


static const char  *fuzz_charsets[] = {
    "utf-8", "iso-8859-1", "windows-1252", "shift_jis", "iso-2022-jp",
    "koi8-r", "gb2312", "utf-16", "x-unknown", "", "us-ascii", "big5",
    "euc-kr", "iso-8859-15", "utf-7", "iso-8859-8-i"
};

static const char  *fuzz_encodings[] = {
    "base64", "quoted-printable", "7bit", "8bit"
};

static const char  *fuzz_props[] = {
    "header:Subject:asText", "header:From:asAddresses:all",
    "header:To:asGroupedAddresses", "header:Message-ID:asMessageIds",
    "header:Date:asDate", "header:List-Post:asURLs", "header:X-A:all",
    "header:Subject", "header::asText", "header:A:asNothing",
    "header:A:asRaw:all:x"
};


static ngx_log_t  fuzz_log;


static void
fuzz_json(json_t *j)
{
    char  *s;

    assert(j != NULL);

    s = json_dumps(j, JSON_ENCODE_ANY);
    assert(s != NULL);
    free(s);
    json_decref(j);
}


static void
fuzz_structure(ngx_pool_t *pool, u_char *p, size_t n)
{
    u_char                           *buf;
    json_t                           *props;
    ngx_buf_t                         b;
    ngx_str_t                         blob;
    ngx_uint_t                        i;
    ngx_array_t                      *text, *html, *att;
    ngx_mail_plus_imap_value_t       *list;
    ngx_mail_plus_imap_limits_t       limits;
    ngx_mail_plus_imap_parser_t       parser;
    ngx_http_mail_plus_jmap_part_t   *root, **parts;

    buf = ngx_pnalloc(pool, n + 64);
    assert(buf);

    b.pos = buf;
    b.last = ngx_cpymem(buf, "* 1 FETCH (BODYSTRUCTURE ", 25);
    b.last = ngx_cpymem(b.last, p, n);
    b.last = ngx_cpymem(b.last, ")\r\n", 3);

    limits.line = 65536;
    limits.literal = 65536;
    limits.depth = 64;
    limits.items = 4096;
    limits.total = 1 << 20;

    if (ngx_mail_plus_imap_parser_init(&parser, &limits, pool) != NGX_OK
        || ngx_mail_plus_imap_parse(&parser, &b) != NGX_OK)
    {
        return;
    }

    list = ngx_mail_plus_imap_item(parser.response->data, 0);

    root = ngx_http_mail_plus_jmap_mime_structure(pool,
                                         ngx_mail_plus_imap_item(list, 1));
    if (root == NULL) {
        return;
    }

    assert(ngx_http_mail_plus_jmap_mime_bodies(pool, root, &text, &html,
                                               &att)
           == NGX_OK);

    ngx_str_set(&blob, "0123456789abcdef-1-2");

    fuzz_json(ngx_http_mail_plus_jmap_mime_part_json(pool, root, NULL, &blob));

    props = json_pack("[s,s,s,s,s]", "partId", "type", "name", "headers",
                      "header:X");
    assert(props);
    fuzz_json(ngx_http_mail_plus_jmap_mime_part_json(pool, root, props,
                                                     &blob));
    json_decref(props);

    parts = text->elts;
    for (i = 0; i < text->nelts; i++) {
        assert(!parts[i]->multipart);
        fuzz_json(ngx_http_mail_plus_jmap_mime_part_json(pool, parts[i],
                                                         NULL, &blob));
    }

    parts = html->elts;
    for (i = 0; i < html->nelts; i++) {
        assert(!parts[i]->multipart);
    }

    parts = att->elts;
    for (i = 0; i < att->nelts; i++) {
        assert(!parts[i]->multipart);
        fuzz_json(ngx_http_mail_plus_jmap_mime_part_json(pool, parts[i],
                                                         NULL, &blob));
    }
}


static void
fuzz_headers(ngx_pool_t *pool, u_char *p, size_t n)
{
    json_t                            *v;
    ngx_str_t                          raw;
    ngx_uint_t                         i, f;
    ngx_array_t                       *headers;
    ngx_http_mail_plus_jmap_header_t  *h;

    raw.data = p;
    raw.len = n;

    headers = ngx_http_mail_plus_jmap_mime_headers(pool, &raw);
    assert(headers);

    h = headers->elts;

    for (i = 0; i < headers->nelts; i++) {
        assert(h[i].name.len > 0);
        assert(h[i].value.data >= p && h[i].value.data + h[i].value.len
                                       <= p + n);

        for (f = NGX_HTTP_MAIL_PLUS_JMAP_RAW; f <= NGX_HTTP_MAIL_PLUS_JMAP_URLS;
             f++)
        {
            fuzz_json(ngx_http_mail_plus_jmap_mime_value(pool, &h[i].value,
                                                         f));
        }
    }

    fuzz_json(ngx_http_mail_plus_jmap_mime_header_list(headers));

    for (i = 0; i < sizeof(fuzz_props) / sizeof(fuzz_props[0]); i++) {
        v = ngx_http_mail_plus_jmap_mime_property(pool, headers,
                                                  fuzz_props[i]);
        if (i >= 8) {
            assert(v == NULL);
            continue;
        }

        fuzz_json(v);
    }
}


static void
fuzz_body(ngx_pool_t *pool, u_char *p, size_t n, ngx_uint_t cs, ngx_uint_t enc,
    size_t max)
{
    u_char      date[32];
    json_t     *v;
    time_t      t;
    ngx_str_t   in, out, charset, encoding;
    ngx_uint_t  problem;

    in.data = p;
    in.len = n;
    charset.data = (u_char *) fuzz_charsets[cs % 16];
    charset.len = strlen(fuzz_charsets[cs % 16]);
    encoding.data = (u_char *) fuzz_encodings[enc % 4];
    encoding.len = strlen(fuzz_encodings[enc % 4]);
    problem = 0;

    assert(ngx_http_mail_plus_jmap_mime_decode(pool, &in, &encoding, &charset,
                                               enc & 4, &out, &problem)
           == NGX_OK);

    v = ngx_http_mail_plus_jmap_mime_body_value(&out, problem, max);
    assert(v);
    assert(max == 0
           || json_string_length(json_object_get(v, "value")) <= max);
    fuzz_json(v);

    v = ngx_http_mail_plus_jmap_mime_preview(&out);
    assert(v);
    fuzz_json(v);

    if (n >= 26) {
        in.len = 26;
        if (ngx_http_mail_plus_jmap_mime_internaldate(&in, date, &t)
            == NGX_OK)
        {
            assert(date[19] == 'Z');
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p, *last, *cut[2];
    size_t       max;
    ngx_uint_t   cs, enc, k;
    ngx_pool_t  *pool;

    if (size < 4) {
        return 0;
    }

    cs = data[0];
    enc = data[1];
    max = (data[2] << 8 | data[3]) % 4096;

    pool = ngx_create_pool(4096, &fuzz_log);
    assert(pool);

    /* a copy of its own, so that a read past the end is seen */

    p = ngx_pnalloc(pool, size - 4 + 1);
    assert(p);
    ngx_memcpy(p, data + 4, size - 4);
    last = p + size - 4;

    cut[0] = last;
    cut[1] = last;

    for (k = 0; k < 2; k++) {
        u_char  *s = (k == 0) ? p : cut[0] + 4;

        for ( /* void */ ; s + 4 <= last; s++) {
            if (ngx_strncmp(s, "\n%%\n", 4) == 0) {
                cut[k] = s;
                break;
            }
        }

        if (cut[k] == last) {
            break;
        }
    }

    fuzz_structure(pool, p, cut[0] - p);

    if (cut[0] < last) {
        fuzz_headers(pool, cut[0] + 4, cut[1] - cut[0] - 4 > 0
                                       ? (size_t) (cut[1] - (cut[0] + 4))
                                       : 0);
    }

    if (cut[1] < last) {
        fuzz_body(pool, cut[1] + 4, last - (cut[1] + 4), cs, enc, max);

    } else {
        fuzz_body(pool, p, last - p, cs, enc, max);
    }

    ngx_destroy_pool(pool);

    return 0;
}
