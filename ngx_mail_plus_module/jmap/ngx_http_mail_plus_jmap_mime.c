
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <iconv.h>
#include "ngx_http_mail_plus_jmap_mime.h"


/*
 * The MIME work behind Email/get (ngx_http_mail_plus_jmap_mime.h): text
 * in a growing buffer of the pool, bytes to valid UTF-8, encoded words,
 * the header fields and their forms, BODYSTRUCTURE to parts.
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_PREVIEW  256

/* an empty string's data made non-NULL, for the pointer arithmetic */
#define ngx_http_mail_plus_jmap_nonnull(s)                                    \
    if ((s)->data == NULL) {                                                  \
        (s)->data = (u_char *) "";                                            \
        (s)->len = 0;                                                         \
    }


typedef struct {
    ngx_pool_t                      *pool;
    u_char                          *data;
    size_t                           len;
    size_t                           size;
} ngx_http_mail_plus_jmap_buf_t;


typedef struct {
    ngx_pool_t                      *pool;
    json_t                          *groups;
    json_t                          *group;    /* the open one's list */
    json_t                          *ungrouped;
    ngx_http_mail_plus_jmap_buf_t    name;     /* the phrase */
    ngx_http_mail_plus_jmap_buf_t    email;    /* in "<>" */
    ngx_http_mail_plus_jmap_buf_t    comment;
    unsigned                         in_group:1;
    unsigned                         angle:1;  /* inside "<>" */
    unsigned                         had_angle:1;
} ngx_http_mail_plus_jmap_addr_t;


static ngx_int_t ngx_http_mail_plus_jmap_buf_add(
    ngx_http_mail_plus_jmap_buf_t *b, u_char *p, size_t n);
static size_t ngx_http_mail_plus_jmap_utf8_len(u_char *p, u_char *last);
static u_char *ngx_http_mail_plus_jmap_ascii(u_char *p, u_char *last);
static ngx_int_t ngx_http_mail_plus_jmap_utf8(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out, ngx_uint_t *problem);
static ngx_int_t ngx_http_mail_plus_jmap_iconv(ngx_pool_t *pool,
    ngx_str_t *in, u_char *cs, ngx_str_t *out, ngx_uint_t *problem);
static ngx_int_t ngx_http_mail_plus_jmap_b64(ngx_pool_t *pool, u_char *p,
    u_char *last, ngx_str_t *out);
static ngx_int_t ngx_http_mail_plus_jmap_qp(ngx_pool_t *pool, u_char *p,
    u_char *last, ngx_uint_t header, ngx_str_t *out);
static ngx_int_t ngx_http_mail_plus_jmap_words(ngx_pool_t *pool,
    ngx_str_t *in, ngx_str_t *out);
static u_char *ngx_http_mail_plus_jmap_word(ngx_pool_t *pool, u_char *p,
    u_char *last, ngx_str_t *charset, ngx_str_t *bytes);
static ngx_int_t ngx_http_mail_plus_jmap_unfold(ngx_pool_t *pool,
    ngx_str_t *in, ngx_str_t *out);
static json_t *ngx_http_mail_plus_jmap_text(ngx_pool_t *pool, ngx_str_t *raw);
static json_t *ngx_http_mail_plus_jmap_addresses(ngx_pool_t *pool,
    ngx_str_t *raw, ngx_uint_t grouped);
static json_t *ngx_http_mail_plus_jmap_angles(ngx_pool_t *pool,
    ngx_str_t *raw, ngx_uint_t urls);
static json_t *ngx_http_mail_plus_jmap_date(ngx_str_t *raw);
static u_char *ngx_http_mail_plus_jmap_time(u_char *p, ngx_int_t *v,
    ngx_int_t zone);
static u_char *ngx_http_mail_plus_jmap_dec(u_char *p, ngx_uint_t n,
    ngx_uint_t width);
static json_t *ngx_http_mail_plus_jmap_jstr(ngx_pool_t *pool, u_char *p,
    size_t n);
static ngx_http_mail_plus_jmap_part_t *ngx_http_mail_plus_jmap_body(
    ngx_pool_t *pool, ngx_mail_plus_imap_value_t *v, ngx_str_t *id,
    ngx_uint_t depth);
static ngx_int_t ngx_http_mail_plus_jmap_lower(ngx_pool_t *pool,
    ngx_mail_plus_imap_value_t *v, ngx_str_t *s);
static void ngx_http_mail_plus_jmap_ext(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t *part, ngx_mail_plus_imap_value_t *v,
    ngx_uint_t i);
static ngx_int_t ngx_http_mail_plus_jmap_param(ngx_pool_t *pool,
    ngx_mail_plus_imap_value_t *params, const char *key, ngx_str_t *value);
static ngx_int_t ngx_http_mail_plus_jmap_walk(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t **parts, ngx_uint_t n, ngx_str_t *mtype,
    ngx_uint_t alternative, ngx_array_t *html, ngx_array_t *text,
    ngx_array_t *att, ngx_uint_t depth);
static ngx_uint_t ngx_http_mail_plus_jmap_is(ngx_http_mail_plus_jmap_part_t *p,
    const char *type, const char *subtype);
static ngx_uint_t ngx_http_mail_plus_jmap_media(
    ngx_http_mail_plus_jmap_part_t *p);
static ngx_int_t ngx_http_mail_plus_jmap_addr_add(
    ngx_http_mail_plus_jmap_addr_t *a, ngx_http_mail_plus_jmap_buf_t *name,
    ngx_http_mail_plus_jmap_buf_t *email);
static u_char *ngx_http_mail_plus_jmap_addr_quoted(u_char *p, u_char *last,
    ngx_http_mail_plus_jmap_buf_t *name);
static u_char *ngx_http_mail_plus_jmap_addr_comment(u_char *p, u_char *last,
    ngx_http_mail_plus_jmap_buf_t *comment);
static u_char *ngx_http_mail_plus_jmap_addr_word(u_char *p,
    ngx_http_mail_plus_jmap_buf_t *name, char *space);
static ngx_int_t ngx_http_mail_plus_jmap_addr_group(
    ngx_http_mail_plus_jmap_addr_t *a);
static ngx_int_t ngx_http_mail_plus_jmap_addr_end(
    ngx_http_mail_plus_jmap_addr_t *a);
static json_t *ngx_http_mail_plus_jmap_addr_flat(json_t *groups);
static json_t *ngx_http_mail_plus_jmap_part_value(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t *part, const char *prop, ngx_str_t *blob);


static u_char  ngx_http_mail_plus_jmap_fffd[] = { 0xef, 0xbf, 0xbd };


/* a growing buffer */

static ngx_int_t
ngx_http_mail_plus_jmap_buf_add(ngx_http_mail_plus_jmap_buf_t *b, u_char *p,
    size_t n)
{
    size_t   size;
    u_char  *data;

    if (b->len + n > b->size) {
        size = ngx_max(2 * b->size, b->len + n + 64);

        data = ngx_pnalloc(b->pool, size);
        if (data == NULL) {
            return NGX_ERROR;
        }

        if (b->len) {
            ngx_memcpy(data, b->data, b->len);
        }

        b->data = data;
        b->size = size;
    }

    if (n) {
        ngx_memcpy(b->data + b->len, p, n);
        b->len += n;
    }

    return NGX_OK;
}


/* the length of a valid UTF-8 character at p (no surrogates, no
   overlongs, at most U+10FFFF), or 0 */

static size_t
ngx_http_mail_plus_jmap_utf8_len(u_char *p, u_char *last)
{
    u_char      c;
    uint32_t    u, min;
    size_t      n, i;

    c = *p;

    if (c < 0x80) {
        return 1;
    }

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2; u = c & 0x1f; min = 0x80;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3; u = c & 0x0f; min = 0x800;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4; u = c & 0x07; min = 0x10000;

    } else {
        return 0;
    }

    if ((size_t) (last - p) < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        u = (u << 6) | (p[i] & 0x3f);
    }

    if (u < min || u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
        return 0;
    }

    return n;
}


/* the end of the ASCII bytes at p, eight at a time */

static u_char *
ngx_http_mail_plus_jmap_ascii(u_char *p, u_char *last)
{
    uint64_t  w;

    while (last - p >= 8) {
        ngx_memcpy(&w, p, 8);

        if (w & 0x8080808080808080ULL) {
            break;
        }

        p += 8;
    }

    while (p < last && *p < 0x80) {
        p++;
    }

    return p;
}


/* bytes as UTF-8: each byte that starts no valid character replaced */

static ngx_int_t
ngx_http_mail_plus_jmap_utf8(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *out,
    ngx_uint_t *problem)
{
    u_char                         *p, *last, *start;
    size_t                          n;
    ngx_http_mail_plus_jmap_buf_t   b;

    ngx_http_mail_plus_jmap_nonnull(in);

    p = in->data;
    last = p + in->len;

    while (p < last) {
        if (*p < 0x80) {
            p = ngx_http_mail_plus_jmap_ascii(p, last);
            continue;
        }

        n = ngx_http_mail_plus_jmap_utf8_len(p, last);
        if (n == 0) {
            break;
        }
        p += n;
    }

    if (p == last) {
        *out = *in;
        return NGX_OK;
    }

    ngx_memzero(&b, sizeof(ngx_http_mail_plus_jmap_buf_t));
    b.pool = pool;

    start = in->data;

    while (p < last) {
        n = ngx_http_mail_plus_jmap_utf8_len(p, last);

        if (n) {
            p += n;
            continue;
        }

        if (ngx_http_mail_plus_jmap_buf_add(&b, start, p - start) != NGX_OK
            || ngx_http_mail_plus_jmap_buf_add(&b, ngx_http_mail_plus_jmap_fffd,
                                               3)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        *problem = 1;
        p++;
        start = p;
    }

    if (ngx_http_mail_plus_jmap_buf_add(&b, start, p - start) != NGX_OK) {
        return NGX_ERROR;
    }

    out->data = b.data;
    out->len = b.len;

    return NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_mime_charset(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *charset, ngx_str_t *out, ngx_uint_t *problem)
{
    u_char      cs[64];
    ngx_uint_t  i;

    if (charset->len == 0 || charset->len >= sizeof(cs)) {
        return ngx_http_mail_plus_jmap_utf8(pool, in, out, problem);
    }

    for (i = 0; i < charset->len; i++) {
        cs[i] = ngx_tolower(charset->data[i]);

        if (!(isalnum(cs[i]) || cs[i] == '-' || cs[i] == '_'
              || cs[i] == '.' || cs[i] == ':'))
        {
            return ngx_http_mail_plus_jmap_utf8(pool, in, out, problem);
        }
    }

    cs[i] = '\0';

    if (ngx_strcmp(cs, "utf-8") == 0 || ngx_strcmp(cs, "utf8") == 0
        || ngx_strcmp(cs, "us-ascii") == 0 || ngx_strcmp(cs, "ascii") == 0)
    {
        return ngx_http_mail_plus_jmap_utf8(pool, in, out, problem);
    }

    return ngx_http_mail_plus_jmap_iconv(pool, in, cs, out, problem);
}


/* iconv(3) to UTF-8, a byte it refuses as U+FFFD; an unknown charset
   taken as UTF-8 */

static ngx_int_t
ngx_http_mail_plus_jmap_iconv(ngx_pool_t *pool, ngx_str_t *in, u_char *cs,
    ngx_str_t *out, ngx_uint_t *problem)
{
    char       *ip, *op;
    size_t      il, ol, size, done;
    u_char     *buf, *nbuf;
    iconv_t     cd;
    ngx_str_t   conv;

    if (ngx_strcmp(cs, "iso-8859-8-i") == 0) {
        cs[10] = '\0';
    }

    cd = iconv_open("UTF-8", (char *) cs);

    if (cd == (iconv_t) -1) {
        return ngx_http_mail_plus_jmap_utf8(pool, in, out, problem);
    }

    size = in->len * 2 + 16;

    buf = ngx_pnalloc(pool, size);
    if (buf == NULL) {
        iconv_close(cd);
        return NGX_ERROR;
    }

    ip = (char *) in->data;
    il = in->len;
    op = (char *) buf;
    ol = size;

    for ( ;; ) {
        if (il == 0) {
            if (iconv(cd, NULL, NULL, &op, &ol) != (size_t) -1) {
                break;
            }

        } else if (iconv(cd, &ip, &il, &op, &ol) != (size_t) -1) {
            continue;
        }

        if (errno == E2BIG || ol < 4) {
            done = (u_char *) op - buf;
            size *= 2;

            nbuf = ngx_pnalloc(pool, size);
            if (nbuf == NULL) {
                iconv_close(cd);
                return NGX_ERROR;
            }

            ngx_memcpy(nbuf, buf, done);
            buf = nbuf;
            op = (char *) buf + done;
            ol = size - done;
            continue;
        }

        if (il == 0) {
            break;
        }

        /* EILSEQ, EINVAL: a byte replaced */

        ngx_memcpy(op, ngx_http_mail_plus_jmap_fffd, 3);
        op += 3;
        ol -= 3;
        *problem = 1;

        if (errno == EINVAL) {
            break;
        }

        ip++;
        il--;
    }

    iconv_close(cd);

    conv.data = buf;
    conv.len = (u_char *) op - buf;

    return ngx_http_mail_plus_jmap_utf8(pool, &conv, out, problem);
}


/* base64, lenient: bytes outside the alphabet skipped, a partial tail
   dropped */

static ngx_int_t
ngx_http_mail_plus_jmap_b64(ngx_pool_t *pool, u_char *p, u_char *last,
    ngx_str_t *out)
{
    u_char     *d;
    ngx_str_t   src;

    src.data = ngx_pnalloc(pool, (last - p) + 4);
    if (src.data == NULL) {
        return NGX_ERROR;
    }

    d = src.data;

    for ( /* void */ ; p < last; p++) {
        if (*p == '=') {
            break;
        }

        if (isalnum(*p) || *p == '+' || *p == '/') {
            *d++ = *p;
        }
    }

    src.len = d - src.data;
    src.len -= src.len % 4 == 1 ? 1 : 0;

    while (src.len % 4) {
        src.data[src.len++] = '=';
    }

    out->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64(out, &src) != NGX_OK) {
        out->len = 0;
    }

    return NGX_OK;
}


/* quoted-printable (RFC 2045 6.7; in a header, RFC 2047's "_" too): a
   bad "=" kept as it is */

static ngx_int_t
ngx_http_mail_plus_jmap_qp(ngx_pool_t *pool, u_char *p, u_char *last,
    ngx_uint_t header, ngx_str_t *out)
{
    u_char     *d, *q;
    ngx_int_t   hi, lo;

    out->data = ngx_pnalloc(pool, (last - p) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    d = out->data;

    while (p < last) {

        if (*p == '_' && header) {
            *d++ = ' ';
            p++;
            continue;
        }

        if (*p != '=') {
            *d++ = *p++;
            continue;
        }

        /* a soft line break: "=", white space, CRLF or LF */

        q = p + 1;
        while (q < last && (*q == ' ' || *q == '\t')) {
            q++;
        }

        if (q < last && (*q == '\n' || (*q == '\r' && q + 1 < last
                                        && q[1] == '\n')))
        {
            p = q + (*q == '\r' ? 2 : 1);
            continue;
        }

        if (last - p >= 3) {
            hi = ngx_hextoi(p + 1, 1);
            lo = ngx_hextoi(p + 2, 1);

            if (hi >= 0 && lo >= 0) {
                *d++ = (u_char) (hi * 16 + lo);
                p += 3;
                continue;
            }
        }

        *d++ = *p++;
    }

    out->len = d - out->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_mime_decode(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *encoding, ngx_str_t *charset, ngx_uint_t decoded,
    ngx_str_t *out, ngx_uint_t *problem)
{
    ngx_str_t  bytes;

    ngx_http_mail_plus_jmap_nonnull(in);

    bytes = *in;

    if (!decoded) {
        if (encoding->len == 6
            && ngx_strncasecmp(encoding->data, (u_char *) "base64", 6) == 0)
        {
            if (ngx_http_mail_plus_jmap_b64(pool, in->data,
                                            in->data + in->len, &bytes)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (encoding->len == 16
                   && ngx_strncasecmp(encoding->data,
                                      (u_char *) "quoted-printable", 16)
                      == 0)
        {
            if (ngx_http_mail_plus_jmap_qp(pool, in->data, in->data + in->len,
                                           0, &bytes)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return ngx_http_mail_plus_jmap_mime_charset(pool, &bytes, charset, out,
                                                problem);
}


/* one encoded word "=?charset[*lang]?B|Q?text?=" at p: its end, or NULL */

static u_char *
ngx_http_mail_plus_jmap_word(ngx_pool_t *pool, u_char *p, u_char *last,
    ngx_str_t *charset, ngx_str_t *bytes)
{
    u_char  *cs, *star, *text, *end, enc;

    if (last - p < 8 || p[0] != '=' || p[1] != '?') {
        return NULL;
    }

    cs = p + 2;
    star = NULL;

    for (p = cs; p < last && *p != '?'; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            return NULL;
        }

        if (*p == '*' && star == NULL) {
            star = p;
        }
    }

    if (last - p < 5 || p == cs) {
        return NULL;
    }

    charset->data = cs;
    charset->len = (star ? star : p) - cs;

    enc = ngx_tolower(p[1]);

    if ((enc != 'b' && enc != 'q') || p[2] != '?') {
        return NULL;
    }

    text = p + 3;

    for (end = text; end + 1 < last; end++) {
        if (*end <= ' ' || *end >= 0x7f) {
            return NULL;
        }

        if (end[0] == '?' && end[1] == '=') {
            break;
        }
    }

    if (end + 1 >= last) {
        return NULL;
    }

    if (enc == 'b') {
        if (ngx_http_mail_plus_jmap_b64(pool, text, end, bytes) != NGX_OK) {
            return NULL;
        }

    } else if (ngx_http_mail_plus_jmap_qp(pool, text, end, 1, bytes)
               != NGX_OK)
    {
        return NULL;
    }

    return end + 2;
}


/*
 * RFC 2047 encoded words decoded, each run of words of one charset
 * converted as a whole (a character may be split between words), white
 * space between two words dropped; the rest taken as UTF-8
 */

static ngx_int_t
ngx_http_mail_plus_jmap_words(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out)
{
    u_char                         *p, *last, *next, *plain, *ws;
    ngx_str_t                       cs, pcs, bytes, s, conv;
    ngx_uint_t                      problem;
    ngx_http_mail_plus_jmap_buf_t   b, run;

    ngx_http_mail_plus_jmap_nonnull(in);

    ngx_memzero(&b, sizeof(ngx_http_mail_plus_jmap_buf_t));
    ngx_memzero(&run, sizeof(ngx_http_mail_plus_jmap_buf_t));
    b.pool = pool;
    run.pool = pool;

    ngx_str_null(&pcs);
    problem = 0;

    p = in->data;
    last = p + in->len;
    plain = p;
    ws = NULL;

    while (p <= last) {

        next = (p < last && *p == '=')
               ? ngx_http_mail_plus_jmap_word(pool, p, last, &cs, &bytes)
               : NULL;

        if (next && run.len && ws && ws == plain
            && cs.len == pcs.len
            && ngx_strncasecmp(cs.data, pcs.data, cs.len) == 0)
        {
            /* the same charset after white space only: one run */

            if (ngx_http_mail_plus_jmap_buf_add(&run, bytes.data, bytes.len)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            p = next;
            plain = p;
            ws = p;
            continue;
        }

        if (next == NULL && p < last) {
            if (*p != ' ' && *p != '\t') {
                ws = NULL;
            }
            p++;
            continue;
        }

        /* a word of another charset, or the end: flush what is before */

        if (run.len) {
            s.data = run.data;
            s.len = run.len;

            if (ngx_http_mail_plus_jmap_mime_charset(pool, &s, &pcs, &conv,
                                                     &problem)
                != NGX_OK
                || ngx_http_mail_plus_jmap_buf_add(&b, conv.data, conv.len)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            run.len = 0;
        }

        if (!(next && ws == plain)) {
            if (ngx_http_mail_plus_jmap_buf_add(&b, plain, p - plain)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (next == NULL) {
            break;
        }

        if (ngx_http_mail_plus_jmap_buf_add(&run, bytes.data, bytes.len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        pcs = cs;
        p = next;
        plain = p;
        ws = p;
    }

    s.data = b.data;
    s.len = b.len;

    return ngx_http_mail_plus_jmap_utf8(pool, &s, out, &problem);
}


/* RFC 5322 unfolding: CRLF (or LF) before white space removed; a lone
   CR or LF left is made a space */

static ngx_int_t
ngx_http_mail_plus_jmap_unfold(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out)
{
    u_char  *p, *last, *d;

    ngx_http_mail_plus_jmap_nonnull(in);

    out->data = ngx_pnalloc(pool, in->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    d = out->data;
    last = in->data + in->len;

    for (p = in->data; p < last; p++) {
        if (*p == '\r' || *p == '\n') {
            continue;
        }

        *d++ = *p ? *p : ' ';
    }

    out->len = d - out->data;

    return NGX_OK;
}


/* bytes to a JSON string (valid UTF-8 made first) */

static json_t *
ngx_http_mail_plus_jmap_jstr(ngx_pool_t *pool, u_char *p, size_t n)
{
    ngx_str_t   in, out;
    ngx_uint_t  problem;

    in.data = p;
    in.len = n;
    problem = 0;

    if (ngx_http_mail_plus_jmap_utf8(pool, &in, &out, &problem) != NGX_OK) {
        return NULL;
    }

    return json_stringn((char *) out.data, out.len);
}


/* asText: unfolded, words decoded, white space trimmed */

static json_t *
ngx_http_mail_plus_jmap_text(ngx_pool_t *pool, ngx_str_t *raw)
{
    u_char     *p, *last;
    ngx_str_t   s, t;

    if (ngx_http_mail_plus_jmap_unfold(pool, raw, &s) != NGX_OK
        || ngx_http_mail_plus_jmap_words(pool, &s, &t) != NGX_OK)
    {
        return NULL;
    }

    p = t.data;
    last = p + t.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    return json_stringn((char *) p, last - p);
}


/*
 * asAddresses / asGroupedAddresses (RFC 5322 3.4, leniently): a phrase
 * then "<addr>", or a bare addr-spec (its name from a comment after it),
 * "name:" opening a group and ";" closing it
 */



static ngx_int_t
ngx_http_mail_plus_jmap_addr_add(ngx_http_mail_plus_jmap_addr_t *a,
    ngx_http_mail_plus_jmap_buf_t *name, ngx_http_mail_plus_jmap_buf_t *email)
{
    u_char     *p, *last;
    json_t     *o, *g;
    ngx_str_t   s, t;

    if (email->len == 0) {
        return NGX_OK;
    }

    p = email->data;
    last = p + email->len;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && last[-1] == ' ') {
        last--;
    }

    if (p == last) {
        return NGX_OK;
    }

    o = json_object();
    if (o == NULL) {
        return NGX_ERROR;
    }

    json_object_set_new(o, "email",
                        ngx_http_mail_plus_jmap_jstr(a->pool, p, last - p));

    s.data = name->data;
    s.len = name->len;

    while (s.len && s.data[0] == ' ') {
        s.data++;
        s.len--;
    }

    while (s.len && s.data[s.len - 1] == ' ') {
        s.len--;
    }

    if (s.len) {
        if (ngx_http_mail_plus_jmap_words(a->pool, &s, &t) != NGX_OK) {
            json_decref(o);
            return NGX_ERROR;
        }

        json_object_set_new(o, "name", json_stringn((char *) t.data, t.len));

    } else {
        json_object_set_new(o, "name", json_null());
    }

    if (a->in_group) {
        return json_array_append_new(a->group, o) ? NGX_ERROR : NGX_OK;
    }

    if (a->ungrouped == NULL) {
        g = json_object();
        a->ungrouped = json_array();

        if (g == NULL || a->ungrouped == NULL) {
            json_decref(o);
            json_decref(g);
            return NGX_ERROR;
        }

        json_object_set_new(g, "name", json_null());
        json_object_set_new(g, "addresses", a->ungrouped);
        json_array_append_new(a->groups, g);
    }

    return json_array_append_new(a->ungrouped, o) ? NGX_ERROR : NGX_OK;
}


static json_t *
ngx_http_mail_plus_jmap_addresses(ngx_pool_t *pool, ngx_str_t *raw,
    ngx_uint_t grouped)
{
    u_char                          c, *p, *last;
    json_t                         *all;
    ngx_int_t                       rc;
    ngx_str_t                       s;
    ngx_http_mail_plus_jmap_addr_t  a;

    if (ngx_http_mail_plus_jmap_unfold(pool, raw, &s) != NGX_OK) {
        return NULL;
    }

    ngx_memzero(&a, sizeof(ngx_http_mail_plus_jmap_addr_t));
    a.pool = pool;
    a.name.pool = pool;
    a.email.pool = pool;
    a.comment.pool = pool;

    a.groups = json_array();
    if (a.groups == NULL) {
        return NULL;
    }

    p = s.data;
    last = p + s.len;

    for ( ;; ) {
        if (p >= last) {
            a.angle = 0;                /* an unclosed "<" ends here */
        }

        c = (p < last) ? *p : ',';

        if (a.angle) {
            if (c == '>') {
                a.angle = 0;

            } else if (c != ' ' && c != '\t') {
                rc = ngx_http_mail_plus_jmap_buf_add(&a.email, p, 1);
                if (rc != NGX_OK) {
                    goto failed;
                }
            }

            p++;
            continue;
        }

        switch (c) {

        case '"':
            p = ngx_http_mail_plus_jmap_addr_quoted(p + 1, last, &a.name);
            break;

        case '(':
            a.comment.len = 0;
            p = ngx_http_mail_plus_jmap_addr_comment(p, last, &a.comment);
            break;

        case '<':
            a.angle = 1;
            a.had_angle = 1;
            a.email.len = 0;
            p++;
            break;

        case ':':
            if (a.in_group || a.had_angle) {
                p = ngx_http_mail_plus_jmap_addr_word(p, &a.name, NULL);
                break;
            }

            if (ngx_http_mail_plus_jmap_addr_group(&a) != NGX_OK) {
                goto failed;
            }

            p++;
            break;

        case ',':
        case ';':
            if (ngx_http_mail_plus_jmap_addr_end(&a) != NGX_OK) {
                goto failed;
            }

            if (c == ';' && a.in_group) {
                a.in_group = 0;
                a.group = NULL;
            }

            if (p >= last) {
                goto done;
            }

            p++;
            break;

        case ' ':
        case '\t':
            p = ngx_http_mail_plus_jmap_addr_word(p, &a.name, " ");
            break;

        default:
            p = ngx_http_mail_plus_jmap_addr_word(p, &a.name, NULL);
        }

        if (p == NULL) {
            goto failed;
        }
    }

done:

    if (grouped) {
        return a.groups;
    }

    all = ngx_http_mail_plus_jmap_addr_flat(a.groups);
    json_decref(a.groups);

    return all;

failed:

    json_decref(a.groups);

    return NULL;
}


/* a quoted string's content into the phrase: the byte after it, or NULL */

static u_char *
ngx_http_mail_plus_jmap_addr_quoted(u_char *p, u_char *last,
    ngx_http_mail_plus_jmap_buf_t *name)
{
    for ( /* void */ ; p < last; p++) {
        if (*p == '"') {
            return p + 1;
        }

        if (*p == '\\' && p + 1 < last) {
            p++;
        }

        if (ngx_http_mail_plus_jmap_buf_add(name, p, 1) != NGX_OK) {
            return NULL;
        }
    }

    return p;
}


/* a comment (nested) into its buffer, without its parentheses */

static u_char *
ngx_http_mail_plus_jmap_addr_comment(u_char *p, u_char *last,
    ngx_http_mail_plus_jmap_buf_t *comment)
{
    ngx_uint_t  depth;

    depth = 0;

    for ( /* void */ ; p < last; p++) {
        if (*p == '\\' && p + 1 < last) {
            p++;

        } else if (*p == '(') {
            if (depth++ == 0) {
                continue;
            }

        } else if (*p == ')') {
            if (--depth == 0) {
                return p + 1;
            }
        }

        if (ngx_http_mail_plus_jmap_buf_add(comment, p, 1) != NGX_OK) {
            return NULL;
        }
    }

    return p;
}


/* a byte of the phrase, or (space set) one space between its words */

static u_char *
ngx_http_mail_plus_jmap_addr_word(u_char *p,
    ngx_http_mail_plus_jmap_buf_t *name, char *space)
{
    if (space) {
        if (name->len == 0 || name->data[name->len - 1] == ' ') {
            return p + 1;
        }

        return ngx_http_mail_plus_jmap_buf_add(name, (u_char *) " ", 1)
               == NGX_OK ? p + 1 : NULL;
    }

    return ngx_http_mail_plus_jmap_buf_add(name, p, 1) == NGX_OK ? p + 1
                                                                  : NULL;
}


/* "name:" opens a group */

static ngx_int_t
ngx_http_mail_plus_jmap_addr_group(ngx_http_mail_plus_jmap_addr_t *a)
{
    json_t     *g;
    ngx_str_t   s, t;

    s.data = a->name.data;
    s.len = a->name.len;

    if (ngx_http_mail_plus_jmap_words(a->pool, &s, &t) != NGX_OK) {
        return NGX_ERROR;
    }

    while (t.len && t.data[0] == ' ') {
        t.data++;
        t.len--;
    }

    while (t.len && t.data[t.len - 1] == ' ') {
        t.len--;
    }

    g = json_object();
    a->group = json_array();

    if (g == NULL || a->group == NULL) {
        json_decref(g);
        json_decref(a->group);
        return NGX_ERROR;
    }

    json_object_set_new(g, "name", json_stringn((char *) t.data, t.len));
    json_object_set_new(g, "addresses", a->group);

    if (json_array_append_new(a->groups, g) != 0) {
        return NGX_ERROR;
    }

    a->in_group = 1;
    a->ungrouped = NULL;
    a->name.len = 0;
    a->email.len = 0;
    a->comment.len = 0;
    a->had_angle = 0;

    return NGX_OK;
}


/* "," or ";" ends an address: "phrase <addr>", or a bare addr-spec (the
   phrase without spaces) named by its comment */

static ngx_int_t
ngx_http_mail_plus_jmap_addr_end(ngx_http_mail_plus_jmap_addr_t *a)
{
    size_t     i;
    ngx_int_t  rc;

    if (a->had_angle) {
        rc = ngx_http_mail_plus_jmap_addr_add(a, &a->name, &a->email);

    } else {
        a->email.len = 0;

        for (i = 0; i < a->name.len; i++) {
            if (a->name.data[i] != ' '
                && ngx_http_mail_plus_jmap_buf_add(&a->email,
                                                   a->name.data + i, 1)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        rc = ngx_http_mail_plus_jmap_addr_add(a, &a->comment, &a->email);
    }

    a->name.len = 0;
    a->email.len = 0;
    a->comment.len = 0;
    a->had_angle = 0;

    return rc;
}


/* the groups' addresses in one list */

static json_t *
ngx_http_mail_plus_jmap_addr_flat(json_t *groups)
{
    json_t  *all, *addrs;
    size_t   i, j;

    all = json_array();
    if (all == NULL) {
        return NULL;
    }

    for (i = 0; i < json_array_size(groups); i++) {
        addrs = json_object_get(json_array_get(groups, i), "addresses");

        for (j = 0; j < json_array_size(addrs); j++) {
            if (json_array_append(all, json_array_get(addrs, j)) != 0) {
                json_decref(all);
                return NULL;
            }
        }
    }

    return all;
}


/* asMessageIds (without the angle brackets) or asURLs: what is between
   "<" and ">", white space removed; null if there is none */

static json_t *
ngx_http_mail_plus_jmap_angles(ngx_pool_t *pool, ngx_str_t *raw,
    ngx_uint_t urls)
{
    u_char  *p, *last, *start, *d;
    json_t  *list, *s;

    ngx_http_mail_plus_jmap_nonnull(raw);

    list = json_array();
    if (list == NULL) {
        return NULL;
    }

    p = raw->data;
    last = p + raw->len;

    while (p < last) {
        if (*p != '<') {
            p++;
            continue;
        }

        start = ++p;

        while (p < last && *p != '>' && *p != '<') {
            p++;
        }

        if (p == last || *p == '<') {
            continue;
        }

        d = start;

        for (d = start; d < p; d++) {
            if (*d <= ' ') {
                break;
            }
        }

        if (d < p || p == start) {
            if (!urls) {
                json_decref(list);
                return json_null();
            }
            p++;
            continue;
        }

        s = ngx_http_mail_plus_jmap_jstr(pool, start, p - start);
        if (s == NULL || json_array_append_new(list, s) != 0) {
            json_decref(list);
            return NULL;
        }

        p++;
    }

    if (json_array_size(list) == 0) {
        json_decref(list);
        return json_null();
    }

    return list;
}


/* asDate: RFC 5322's date-time (zones of RFC 822 too) to RFC 3339 */

static json_t *
ngx_http_mail_plus_jmap_date(ngx_str_t *raw)
{
    u_char            *p, *last, buf[32];
    ngx_int_t          v[6], zone, sign;
    ngx_uint_t         i, k, n;
    static const char  months[] = "janfebmaraprmayjunjulaugsepoctnovdec";

    ngx_http_mail_plus_jmap_nonnull(raw);

    p = raw->data;
    last = p + raw->len;

    for (i = 0; p < last && i < 40; i++, p++) {
        if (*p == ',') {
            p++;
            break;
        }

        if (isdigit(*p)) {
            break;
        }
    }

    while (p < last && !isdigit(*p)) {
        p++;
    }

    /* day, month, year, hour, minute, second */

    for (k = 0; k < 6; k++) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                            || *p == '\n' || (k > 3 && *p == ':')))
        {
            p++;
        }

        if (k == 1) {
            if (last - p < 3) {
                return json_null();
            }

            for (i = 0; i < 12; i++) {
                if (ngx_strncasecmp(p, (u_char *) months + 3 * i, 3) == 0) {
                    break;
                }
            }

            if (i == 12) {
                return json_null();
            }

            v[1] = i + 1;
            p += 3;
            continue;
        }

        if (k == 5 && (p == last || !isdigit(*p))) {
            v[5] = 0;
            break;
        }

        for (n = 0, v[k] = 0; p < last && isdigit(*p) && n < 4; p++, n++) {
            v[k] = v[k] * 10 + (*p - '0');
        }

        if (n == 0) {
            return json_null();
        }

        if (k == 3 && p < last && *p == ':') {
            p++;
        }
    }

    if (v[2] < 50) {
        v[2] += 2000;

    } else if (v[2] < 1000) {
        v[2] += 1900;
    }

    if (v[0] < 1 || v[0] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60) {
        return json_null();
    }

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    zone = 0;

    if (p < last && (*p == '+' || *p == '-')) {
        sign = (*p == '-') ? -1 : 1;

        if (last - p < 5) {
            return json_null();
        }

        for (i = 1; i < 5; i++) {
            if (!isdigit(p[i])) {
                return json_null();
            }
        }

        zone = sign * (((p[1] - '0') * 10 + (p[2] - '0')) * 60
                       + (p[3] - '0') * 10 + (p[4] - '0'));

    } else if (last - p >= 3 && p[1] == 'D' && p[2] == 'T') {
        zone = (*p == 'E') ? -240 : (*p == 'C') ? -300
               : (*p == 'M') ? -360 : (*p == 'P') ? -420 : 0;

    } else if (last - p >= 3 && p[1] == 'S' && p[2] == 'T') {
        zone = (*p == 'E') ? -300 : (*p == 'C') ? -360
               : (*p == 'M') ? -420 : (*p == 'P') ? -480 : 0;
    }

    p = ngx_http_mail_plus_jmap_time(buf, v, zone);

    return json_stringn((char *) buf, p - buf);
}


/* "2026-12-07T13:58:18+01:00" of day, month, year, hour, minute, second
   and the zone in minutes */

static u_char *
ngx_http_mail_plus_jmap_time(u_char *p, ngx_int_t *v, ngx_int_t zone)
{
    p = ngx_http_mail_plus_jmap_dec(p, v[2], 4);
    *p++ = '-';
    p = ngx_http_mail_plus_jmap_dec(p, v[1], 2);
    *p++ = '-';
    p = ngx_http_mail_plus_jmap_dec(p, v[0], 2);
    *p++ = 'T';
    p = ngx_http_mail_plus_jmap_dec(p, v[3], 2);
    *p++ = ':';
    p = ngx_http_mail_plus_jmap_dec(p, v[4], 2);
    *p++ = ':';
    p = ngx_http_mail_plus_jmap_dec(p, v[5], 2);
    *p++ = zone < 0 ? '-' : '+';
    p = ngx_http_mail_plus_jmap_dec(p, ngx_abs(zone) / 60, 2);
    *p++ = ':';

    return ngx_http_mail_plus_jmap_dec(p, ngx_abs(zone) % 60, 2);
}


/* a number in decimal, zero-padded to width (at most 20 digits) */

static u_char *
ngx_http_mail_plus_jmap_dec(u_char *p, ngx_uint_t n, ngx_uint_t width)
{
    u_char      tmp[NGX_INT64_LEN];
    ngx_uint_t  i;

    i = 0;

    do {
        tmp[i++] = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n && i < sizeof(tmp));

    while (i < width && i < sizeof(tmp)) {
        tmp[i++] = '0';
    }

    while (i) {
        *p++ = tmp[--i];
    }

    return p;
}


ngx_int_t
ngx_http_mail_plus_jmap_mime_form(ngx_str_t *name,
    ngx_http_mail_plus_jmap_form_e *form)
{
    ngx_uint_t         i;
    static const char *forms[] = {
        "asRaw", "asText", "asAddresses", "asGroupedAddresses",
        "asMessageIds", "asDate", "asURLs", NULL
    };

    for (i = 0; forms[i]; i++) {
        if (name->len == ngx_strlen(forms[i])
            && ngx_strncmp(name->data, forms[i], name->len) == 0)
        {
            *form = (ngx_http_mail_plus_jmap_form_e) i;
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


json_t *
ngx_http_mail_plus_jmap_mime_value(ngx_pool_t *pool, ngx_str_t *raw,
    ngx_http_mail_plus_jmap_form_e form)
{
    switch (form) {

    case NGX_HTTP_MAIL_PLUS_JMAP_TEXT:
        return ngx_http_mail_plus_jmap_text(pool, raw);

    case NGX_HTTP_MAIL_PLUS_JMAP_ADDRESSES:
        return ngx_http_mail_plus_jmap_addresses(pool, raw, 0);

    case NGX_HTTP_MAIL_PLUS_JMAP_GROUPED:
        return ngx_http_mail_plus_jmap_addresses(pool, raw, 1);

    case NGX_HTTP_MAIL_PLUS_JMAP_MESSAGE_IDS:
        return ngx_http_mail_plus_jmap_angles(pool, raw, 0);

    case NGX_HTTP_MAIL_PLUS_JMAP_DATE:
        return ngx_http_mail_plus_jmap_date(raw);

    case NGX_HTTP_MAIL_PLUS_JMAP_URLS:
        return ngx_http_mail_plus_jmap_angles(pool, raw, 1);

    default:
        return ngx_http_mail_plus_jmap_jstr(pool, raw->data, raw->len);
    }
}


ngx_array_t *
ngx_http_mail_plus_jmap_mime_headers(ngx_pool_t *pool, ngx_str_t *raw)
{
    u_char                            *p, *last, *name, *colon, *end;
    ngx_array_t                       *a;
    ngx_http_mail_plus_jmap_header_t  *h;

    ngx_http_mail_plus_jmap_nonnull(raw);

    a = ngx_array_create(pool, 16, sizeof(ngx_http_mail_plus_jmap_header_t));
    if (a == NULL) {
        return NULL;
    }

    p = raw->data;
    last = p + raw->len;

    while (p < last) {

        if (*p == '\r' || *p == '\n') {
            break;                                  /* the blank line */
        }

        name = p;
        colon = NULL;

        for ( /* void */ ; p < last && *p != '\n'; p++) {
            if (*p == ':') {
                colon = p;
                break;
            }

            if (*p <= ' ' || *p >= 0x7f) {
                break;
            }
        }

        /* the field's end: a line break not followed by white space */

        for (end = p; end < last; end++) {
            if (*end == '\n'
                && (end + 1 == last || (end[1] != ' ' && end[1] != '\t')))
            {
                break;
            }
        }

        if (colon && colon > name) {
            h = ngx_array_push(a);
            if (h == NULL) {
                return NULL;
            }

            h->name.data = name;
            h->name.len = colon - name;
            h->value.data = colon + 1;
            h->value.len = end - (colon + 1);

            if (h->value.len && h->value.data[h->value.len - 1] == '\r') {
                h->value.len--;
            }
        }

        p = (end < last) ? end + 1 : last;
    }

    return a;
}


json_t *
ngx_http_mail_plus_jmap_mime_header_list(ngx_array_t *headers)
{
    json_t                            *list, *o;
    ngx_uint_t                         i, problem;
    ngx_str_t                          v;
    ngx_http_mail_plus_jmap_header_t  *h;

    list = json_array();
    if (list == NULL) {
        return NULL;
    }

    h = headers->elts;

    for (i = 0; i < headers->nelts; i++) {
        problem = 0;

        if (ngx_http_mail_plus_jmap_utf8(headers->pool, &h[i].value, &v,
                                         &problem)
            != NGX_OK)
        {
            json_decref(list);
            return NULL;
        }

        o = json_pack("{s:s%,s:s%}", "name", (char *) h[i].name.data,
                      h[i].name.len, "value", (char *) v.data, v.len);

        if (o == NULL || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NULL;
        }
    }

    return list;
}


json_t *
ngx_http_mail_plus_jmap_mime_field(ngx_pool_t *pool, ngx_array_t *headers,
    const char *name, ngx_http_mail_plus_jmap_form_e form)
{
    size_t                             n;
    ngx_int_t                          i;
    ngx_http_mail_plus_jmap_header_t  *h;

    n = ngx_strlen(name);
    h = headers->elts;

    for (i = headers->nelts - 1; i >= 0; i--) {
        if (h[i].name.len == n
            && ngx_strncasecmp(h[i].name.data, (u_char *) name, n) == 0)
        {
            return ngx_http_mail_plus_jmap_mime_value(pool, &h[i].value,
                                                      form);
        }
    }

    return json_null();
}


json_t *
ngx_http_mail_plus_jmap_mime_property(ngx_pool_t *pool, ngx_array_t *headers,
    const char *property)
{
    u_char                            *p, *last, *colon;
    json_t                            *all, *v;
    ngx_str_t                          name, form_name;
    ngx_uint_t                         i, every;
    ngx_http_mail_plus_jmap_form_e     form;
    ngx_http_mail_plus_jmap_header_t  *h;

    if (ngx_strncmp(property, "header:", 7) != 0) {
        return NULL;
    }

    p = (u_char *) property + 7;
    last = p + ngx_strlen(p);

    colon = ngx_strlchr(p, last, ':');

    name.data = p;
    name.len = (colon ? colon : last) - p;

    if (name.len == 0) {
        return NULL;
    }

    for (i = 0; i < name.len; i++) {
        if (name.data[i] <= ' ' || name.data[i] >= 0x7f) {
            return NULL;
        }
    }

    form = NGX_HTTP_MAIL_PLUS_JMAP_RAW;
    every = 0;

    if (colon) {
        p = colon + 1;
        colon = ngx_strlchr(p, last, ':');

        form_name.data = p;
        form_name.len = (colon ? colon : last) - p;

        if (form_name.len == 3 && colon == NULL
            && ngx_strncmp(p, "all", 3) == 0)
        {
            every = 1;

        } else if (ngx_http_mail_plus_jmap_mime_form(&form_name, &form)
                   != NGX_OK)
        {
            return NULL;
        }

        if (colon) {
            if (last - colon != 4 || ngx_strncmp(colon + 1, "all", 3) != 0) {
                return NULL;
            }

            every = 1;
        }
    }

    if (!every) {
        h = headers->elts;

        for (i = headers->nelts; i > 0; i--) {
            if (h[i - 1].name.len == name.len
                && ngx_strncasecmp(h[i - 1].name.data, name.data, name.len)
                   == 0)
            {
                return ngx_http_mail_plus_jmap_mime_value(pool,
                                                          &h[i - 1].value,
                                                          form);
            }
        }

        return json_null();
    }

    all = json_array();
    if (all == NULL) {
        return NULL;
    }

    h = headers->elts;

    for (i = 0; i < headers->nelts; i++) {
        if (h[i].name.len == name.len
            && ngx_strncasecmp(h[i].name.data, name.data, name.len) == 0)
        {
            v = ngx_http_mail_plus_jmap_mime_value(pool, &h[i].value, form);

            if (v == NULL || json_array_append_new(all, v) != 0) {
                json_decref(all);
                return NULL;
            }
        }
    }

    return all;
}


size_t
ngx_http_mail_plus_jmap_mime_body_text(ngx_str_t *utf8, size_t max,
    ngx_uint_t *truncated)
{
    u_char  *p, *d, *q, *r, *last;
    size_t   n;

    ngx_http_mail_plus_jmap_nonnull(utf8);

    /* RFC 8621, 4.1.4: each CRLF of the value a single LF */

    p = utf8->data;
    last = p + utf8->len;

    /* the runs between CRLFs moved down, each CRLF's CR dropped */

    for (d = p, q = p; ; q = r + 1) {
        r = memchr(q, CR, last - q);

        if (r == NULL) {
            break;
        }

        if (r + 1 < last && r[1] == LF) {
            d = (d == p) ? r : ngx_movemem(d, p, r - p);
            p = r + 1;
        }
    }

    d = (d == p) ? last : ngx_movemem(d, p, last - p);

    utf8->len = d - utf8->data;

    n = utf8->len;
    *truncated = 0;

    if (max && n > max) {
        n = max;

        while (n && (utf8->data[n] & 0xc0) == 0x80) {
            n--;
        }

        *truncated = 1;
    }

    return n;
}


json_t *
ngx_http_mail_plus_jmap_mime_body_value(ngx_str_t *utf8, ngx_uint_t problem,
    size_t max)
{
    json_t      *o;
    size_t       n;
    ngx_uint_t   truncated;

    n = ngx_http_mail_plus_jmap_mime_body_text(utf8, max, &truncated);

    /* the value is UTF-8 already (checked or made so by the decoding),
       cut at a character's start: not checked again */

    o = json_object();
    if (o == NULL) {
        return NULL;
    }

    if (json_object_set_new_nocheck(o, "value",
                                    json_stringn_nocheck((char *) utf8->data,
                                                         n))
        != 0
        || json_object_set_new_nocheck(o, "isEncodingProblem",
                                       json_boolean(problem))
           != 0
        || json_object_set_new_nocheck(o, "isTruncated",
                                       json_boolean(truncated))
           != 0)
    {
        json_decref(o);
        return NULL;
    }

    return o;
}


json_t *
ngx_http_mail_plus_jmap_mime_preview(ngx_str_t *utf8)
{
    u_char      *p, *last, *d, buf[NGX_HTTP_MAIL_PLUS_JMAP_PREVIEW * 4];
    size_t       n;
    ngx_uint_t   chars, space;

    ngx_http_mail_plus_jmap_nonnull(utf8);

    p = utf8->data;
    last = p + utf8->len;
    d = buf;
    chars = 0;
    space = 0;

    while (p < last && chars < NGX_HTTP_MAIL_PLUS_JMAP_PREVIEW) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            space = (d > buf);
            p++;
            continue;
        }

        if (space) {
            *d++ = ' ';
            space = 0;
            if (++chars == NGX_HTTP_MAIL_PLUS_JMAP_PREVIEW) {
                break;
            }
        }

        n = ngx_http_mail_plus_jmap_utf8_len(p, last);

        if (n == 0) {
            d = ngx_cpymem(d, ngx_http_mail_plus_jmap_fffd, 3);
            p++;

        } else {
            d = ngx_cpymem(d, p, n);
            p += n;
        }

        chars++;
    }

    return json_stringn((char *) buf, d - buf);
}


ngx_int_t
ngx_http_mail_plus_jmap_mime_internaldate(ngx_str_t *in, u_char *out,
    time_t *t)
{
    u_char            *p, *last;
    ngx_int_t          v[7], days, y, m, zone;
    ngx_uint_t         i;
    ngx_tm_t           tm;
    static const char  months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

    ngx_http_mail_plus_jmap_nonnull(in);

    /* " 7-Dec-2026 13:58:18 +0000" */

    p = in->data;
    last = p + in->len;

    if (last - p != 26) {
        return NGX_ERROR;
    }

    v[0] = (p[0] == ' ' ? 0 : p[0] - '0') * 10 + (p[1] - '0');

    for (i = 0; i < 12; i++) {
        if (ngx_strncasecmp(p + 3, (u_char *) months + 3 * i, 3) == 0) {
            break;
        }
    }

    if (i == 12 || p[2] != '-' || p[6] != '-' || p[11] != ' '
        || p[14] != ':' || p[17] != ':' || p[20] != ' '
        || (p[21] != '+' && p[21] != '-'))
    {
        return NGX_ERROR;
    }

    v[1] = i + 1;
    v[2] = ngx_atoi(p + 7, 4);
    v[3] = ngx_atoi(p + 12, 2);
    v[4] = ngx_atoi(p + 15, 2);
    v[5] = ngx_atoi(p + 18, 2);
    v[6] = ngx_atoi(p + 22, 4);

    if (v[2] < 1970 || v[3] < 0 || v[3] > 23 || v[4] < 0 || v[4] > 59
        || v[5] < 0 || v[5] > 60 || v[6] < 0 || v[0] < 1 || v[0] > 31)
    {
        return NGX_ERROR;
    }

    zone = (v[6] / 100) * 60 + v[6] % 100;

    if (p[21] == '-') {
        zone = -zone;
    }

    /* days since 1970-01-01 (March-based year) */

    y = v[2];
    m = v[1];

    if (m <= 2) {
        y--;
        m += 12;
    }

    days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5
           + v[0] - 1 - 719468;

    *t = (time_t) days * 86400 + v[3] * 3600 + v[4] * 60 + v[5] - zone * 60;

    ngx_gmtime(*t, &tm);

    v[0] = tm.ngx_tm_mday;
    v[1] = tm.ngx_tm_mon;
    v[2] = tm.ngx_tm_year;
    v[3] = tm.ngx_tm_hour;
    v[4] = tm.ngx_tm_min;
    v[5] = tm.ngx_tm_sec;

    p = ngx_http_mail_plus_jmap_time(out, v, 0);
    p[-6] = 'Z';

    return NGX_OK;
}


ngx_http_mail_plus_jmap_part_t *
ngx_http_mail_plus_jmap_mime_structure(ngx_pool_t *pool,
    ngx_mail_plus_imap_value_t *v)
{
    ngx_str_t  id;

    ngx_str_null(&id);

    return ngx_http_mail_plus_jmap_body(pool, v, &id, 0);
}


/* a body (RFC 3501 7.4.2) numbered id: "" for the top (its leaf is "1") */

static ngx_http_mail_plus_jmap_part_t *
ngx_http_mail_plus_jmap_body(ngx_pool_t *pool, ngx_mail_plus_imap_value_t *v,
    ngx_str_t *id, ngx_uint_t depth)
{
    u_char                          *p;
    uint64_t                         size;
    ngx_str_t                        sub, s;
    ngx_uint_t                       i, n;
    ngx_mail_plus_imap_value_t      *item, *params;
    ngx_http_mail_plus_jmap_part_t  *part, *child;

    if (v == NULL || v->type != NGX_MAIL_PLUS_IMAP_LIST || v->nelts < 2
        || depth > NGX_HTTP_MAIL_PLUS_JMAP_MIME_DEPTH)
    {
        return NULL;
    }

    part = ngx_pcalloc(pool, sizeof(ngx_http_mail_plus_jmap_part_t));
    if (part == NULL) {
        return NULL;
    }

    if (v->items[0]->type == NGX_MAIL_PLUS_IMAP_LIST) {

        /* multipart: bodies, then the subtype and extensions */

        for (n = 0; n < v->nelts; n++) {
            if (v->items[n]->type != NGX_MAIL_PLUS_IMAP_LIST) {
                break;
            }
        }

        if (n == v->nelts
            || ngx_http_mail_plus_jmap_lower(pool, v->items[n],
                                             &part->subtype)
               != NGX_OK)
        {
            return NULL;
        }

        ngx_str_set(&part->type, "multipart");
        part->multipart = 1;
        part->part_id = *id;

        part->sub = ngx_palloc(pool, n * sizeof(void *));
        if (part->sub == NULL) {
            return NULL;
        }

        for (i = 0; i < n; i++) {
            sub.data = ngx_pnalloc(pool, id->len + 1 + NGX_INT_T_LEN);
            if (sub.data == NULL) {
                return NULL;
            }

            p = sub.data;

            if (id->len) {
                p = ngx_cpymem(p, id->data, id->len);
                *p++ = '.';
            }

            p = ngx_http_mail_plus_jmap_dec(p, i + 1, 1);
            sub.len = p - sub.data;

            child = ngx_http_mail_plus_jmap_body(pool, v->items[i], &sub,
                                                 depth + 1);
            if (child == NULL) {
                return NULL;
            }

            part->sub[part->nsub++] = child;
        }

        /* the part number of a multipart is not a partId */
        ngx_str_null(&part->part_id);

        ngx_http_mail_plus_jmap_ext(pool, part, v, n + 1);

        return part;
    }

    if (v->nelts < 7
        || ngx_http_mail_plus_jmap_lower(pool, v->items[0], &part->type)
           != NGX_OK
        || ngx_http_mail_plus_jmap_lower(pool, v->items[1], &part->subtype)
           != NGX_OK
        || ngx_mail_plus_imap_number(v->items[6], &size) != NGX_OK)
    {
        return NULL;
    }

    if (id->len) {
        part->part_id = *id;

    } else {
        ngx_str_set(&part->part_id, "1");
    }

    part->size = size;
    params = v->items[2];

    if (ngx_http_mail_plus_jmap_param(pool, params, "charset", &part->charset)
        != NGX_OK)
    {
        ngx_str_null(&part->charset);
    }

    if (ngx_http_mail_plus_jmap_param(pool, params, "name", &part->name)
        != NGX_OK)
    {
        ngx_str_null(&part->name);
    }

    if (ngx_mail_plus_imap_string(v->items[3], &s) == NGX_OK && s.len) {
        if (s.data[0] == '<' && s.len > 1 && s.data[s.len - 1] == '>') {
            s.data++;
            s.len -= 2;
        }

        part->cid = s;
    }

    if (ngx_http_mail_plus_jmap_lower(pool, v->items[5], &part->encoding)
        != NGX_OK)
    {
        ngx_str_set(&part->encoding, "7bit");
    }

    i = 7;

    if (part->type.len == 4 && ngx_strncmp(part->type.data, "text", 4) == 0) {
        i = 8;

    } else if (part->type.len == 7 && part->subtype.len == 6
               && ngx_strncmp(part->type.data, "message", 7) == 0
               && ngx_strncmp(part->subtype.data, "rfc822", 6) == 0)
    {
        i = 10;
    }

    item = ngx_mail_plus_imap_item(v, i);           /* body-fld-md5 */

    if (item) {
        ngx_http_mail_plus_jmap_ext(pool, part, v, i + 1);
    }

    return part;
}


/* an atom or string in lower case */

static ngx_int_t
ngx_http_mail_plus_jmap_lower(ngx_pool_t *pool, ngx_mail_plus_imap_value_t *v,
    ngx_str_t *s)
{
    ngx_str_t  in;

    if (ngx_mail_plus_imap_string(v, &in) != NGX_OK || in.len == 0) {
        return NGX_ERROR;
    }

    s->data = ngx_pnalloc(pool, in.len);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(s->data, in.data, in.len);
    s->len = in.len;

    return NGX_OK;
}


/* the extension data from item i: disposition, language, location (a
   multipart's params come first, at i - 1, and are not needed) */

static void
ngx_http_mail_plus_jmap_ext(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t *part, ngx_mail_plus_imap_value_t *v,
    ngx_uint_t i)
{
    ngx_str_t                    s, *l, name;
    ngx_uint_t                   k;
    ngx_mail_plus_imap_value_t  *d, *lang;

    d = ngx_mail_plus_imap_item(v, i);

    if (d && d->type == NGX_MAIL_PLUS_IMAP_LIST && d->nelts >= 1) {
        if (ngx_http_mail_plus_jmap_lower(pool, d->items[0],
                                          &part->disposition)
            != NGX_OK)
        {
            ngx_str_null(&part->disposition);
        }

        if (ngx_http_mail_plus_jmap_param(pool, ngx_mail_plus_imap_item(d, 1),
                                          "filename", &name)
            == NGX_OK)
        {
            part->name = name;
        }
    }

    lang = ngx_mail_plus_imap_item(v, i + 1);

    if (lang && lang->type != NGX_MAIL_PLUS_IMAP_NIL) {
        part->language = ngx_array_create(pool, 2, sizeof(ngx_str_t));

        if (part->language) {
            if (lang->type != NGX_MAIL_PLUS_IMAP_LIST) {
                if (ngx_mail_plus_imap_string(lang, &s) == NGX_OK) {
                    l = ngx_array_push(part->language);
                    if (l) {
                        *l = s;
                    }
                }

            } else {
                for (k = 0; k < lang->nelts; k++) {
                    if (ngx_mail_plus_imap_string(lang->items[k], &s)
                        == NGX_OK)
                    {
                        l = ngx_array_push(part->language);
                        if (l) {
                            *l = s;
                        }
                    }
                }
            }
        }
    }

    if (ngx_mail_plus_imap_string(ngx_mail_plus_imap_item(v, i + 2), &s)
        == NGX_OK)
    {
        part->location = s;
    }
}


/*
 * a parameter as UTF-8: "key" (encoded words decoded), or RFC 2231's
 * "key*" (charset'lang'%XX) and continuations "key*0", "key*1*"...
 */

static ngx_int_t
ngx_http_mail_plus_jmap_param(ngx_pool_t *pool,
    ngx_mail_plus_imap_value_t *params, const char *key, ngx_str_t *value)
{
    u_char                         *p, *last, *q;
    size_t                          klen;
    ngx_str_t                       k, v, cs, bytes;
    ngx_int_t                       hi, lo;
    ngx_uint_t                      i, seq, found, problem, plain;
    ngx_http_mail_plus_jmap_buf_t   b;

    if (params == NULL || params->type != NGX_MAIL_PLUS_IMAP_LIST) {
        return NGX_DECLINED;
    }

    klen = ngx_strlen(key);
    ngx_memzero(&b, sizeof(ngx_http_mail_plus_jmap_buf_t));
    b.pool = pool;
    ngx_str_null(&cs);
    problem = 0;
    plain = 0;

    for (seq = 0; seq < 64; seq++) {
        found = 0;

        for (i = 0; i + 1 < params->nelts; i += 2) {
            if (ngx_mail_plus_imap_string(params->items[i], &k) != NGX_OK
                || ngx_mail_plus_imap_string(params->items[i + 1], &v)
                   != NGX_OK
                || k.len < klen
                || ngx_strncasecmp(k.data, (u_char *) key, klen) != 0)
            {
                continue;
            }

            p = k.data + klen;
            last = k.data + k.len;

            if (seq == 0 && p == last) {
                /* the plain form: encoded words in it decoded */
                if (ngx_http_mail_plus_jmap_words(pool, &v, value)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
                plain = 1;
                break;
            }

            if (p == last || *p++ != '*') {
                continue;
            }

            if (p == last) {
                if (seq != 0) {
                    continue;
                }

            } else {
                q = p;
                while (q < last && isdigit(*q)) {
                    q++;
                }
                if (q == p || (ngx_uint_t) ngx_atoi(p, q - p) != seq
                    || (q < last && !(*q == '*' && q + 1 == last)))
                {
                    continue;
                }
                if (q == last) {
                    /* not encoded */
                    if (ngx_http_mail_plus_jmap_buf_add(&b, v.data, v.len)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }
                    found = 1;
                    break;
                }
            }

            /* an encoded piece: the first has charset'lang' */

            p = v.data;
            last = v.data + v.len;

            if (seq == 0) {
                q = ngx_strlchr(p, last, '\'');
                if (q) {
                    cs.data = p;
                    cs.len = q - p;
                    q = ngx_strlchr(q + 1, last, '\'');
                    p = q ? q + 1 : last;
                }
            }

            for ( /* void */ ; p < last; p++) {
                if (*p == '%' && last - p >= 3
                    && (hi = ngx_hextoi(p + 1, 1)) >= 0
                    && (lo = ngx_hextoi(p + 2, 1)) >= 0)
                {
                    u_char  c = (u_char) (hi * 16 + lo);

                    if (ngx_http_mail_plus_jmap_buf_add(&b, &c, 1)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }
                    p += 2;
                    continue;
                }

                if (ngx_http_mail_plus_jmap_buf_add(&b, p, 1) != NGX_OK) {
                    return NGX_ERROR;
                }
            }

            found = 1;
            break;
        }

        if (plain) {
            break;
        }

        if (!found) {
            if (seq == 0) {
                /* neither "key", "key*" nor "key*0" */
                return NGX_DECLINED;
            }

            break;
        }
    }

    if (plain && b.len == 0) {
        return NGX_OK;
    }

    bytes.data = b.data;
    bytes.len = b.len;

    return ngx_http_mail_plus_jmap_mime_charset(pool, &bytes, &cs, value,
                                                &problem);
}


ngx_int_t
ngx_http_mail_plus_jmap_mime_bodies(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t *root, ngx_array_t **text,
    ngx_array_t **html, ngx_array_t **attachments)
{
    ngx_str_t  mixed;

    *text = ngx_array_create(pool, 2, sizeof(void *));
    *html = ngx_array_create(pool, 2, sizeof(void *));
    *attachments = ngx_array_create(pool, 2, sizeof(void *));

    if (*text == NULL || *html == NULL || *attachments == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&mixed, "mixed");

    return ngx_http_mail_plus_jmap_walk(pool, &root, 1, &mixed, 0, *html,
                                        *text, *attachments, 0);
}


static ngx_uint_t
ngx_http_mail_plus_jmap_is(ngx_http_mail_plus_jmap_part_t *p,
    const char *type, const char *subtype)
{
    return p->type.len == ngx_strlen(type)
           && ngx_strncmp(p->type.data, type, p->type.len) == 0
           && p->subtype.len == ngx_strlen(subtype)
           && ngx_strncmp(p->subtype.data, subtype, p->subtype.len) == 0;
}


static ngx_uint_t
ngx_http_mail_plus_jmap_media(ngx_http_mail_plus_jmap_part_t *p)
{
    return (p->type.len == 5 && ngx_strncmp(p->type.data, "image", 5) == 0)
           || (p->type.len == 5
               && ngx_strncmp(p->type.data, "audio", 5) == 0)
           || (p->type.len == 5
               && ngx_strncmp(p->type.data, "video", 5) == 0);
}


/* RFC 8621 4.1.4's parseStructure(), html or text NULL where it has
   dropped that list */

static ngx_int_t
ngx_http_mail_plus_jmap_walk(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t **parts, ngx_uint_t n, ngx_str_t *mtype,
    ngx_uint_t alternative, ngx_array_t *html, ngx_array_t *text,
    ngx_array_t *att, ngx_uint_t depth)
{
    void                            **e;
    ngx_int_t                         tlen, hlen;
    ngx_uint_t                        i, k, inl, related, alt;
    ngx_array_t                      *to;
    ngx_http_mail_plus_jmap_part_t   *p;

    if (depth > NGX_HTTP_MAIL_PLUS_JMAP_MIME_DEPTH) {
        return NGX_ERROR;
    }

    tlen = text ? (ngx_int_t) text->nelts : -1;
    hlen = html ? (ngx_int_t) html->nelts : -1;
    related = (mtype->len == 7 && ngx_strncmp(mtype->data, "related", 7) == 0);
    alt = (mtype->len == 11
           && ngx_strncmp(mtype->data, "alternative", 11) == 0);

    for (i = 0; i < n; i++) {
        p = parts[i];

        if (p->multipart) {
            if (ngx_http_mail_plus_jmap_walk(pool, p->sub, p->nsub,
                    &p->subtype,
                    alternative
                    || (p->subtype.len == 11
                        && ngx_strncmp(p->subtype.data, "alternative", 11)
                           == 0),
                    html, text, att, depth + 1)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        inl = !(p->disposition.len == 10
                && ngx_strncmp(p->disposition.data, "attachment", 10) == 0)
              && (ngx_http_mail_plus_jmap_is(p, "text", "plain")
                  || ngx_http_mail_plus_jmap_is(p, "text", "html")
                  || ngx_http_mail_plus_jmap_media(p))
              && (i == 0
                  || (!related && (ngx_http_mail_plus_jmap_media(p)
                                   || p->name.data == NULL)));

        if (!inl) {
            e = ngx_array_push(att);
            if (e == NULL) {
                return NGX_ERROR;
            }
            *e = p;
            continue;
        }

        if (alt) {
            to = ngx_http_mail_plus_jmap_is(p, "text", "plain") ? text
                 : ngx_http_mail_plus_jmap_is(p, "text", "html") ? html
                 : att;

            if (to) {
                e = ngx_array_push(to);
                if (e == NULL) {
                    return NGX_ERROR;
                }
                *e = p;
            }

            continue;
        }

        if (alternative) {
            if (ngx_http_mail_plus_jmap_is(p, "text", "plain")) {
                html = NULL;
            }

            if (ngx_http_mail_plus_jmap_is(p, "text", "html")) {
                text = NULL;
            }
        }

        if (text) {
            e = ngx_array_push(text);
            if (e == NULL) {
                return NGX_ERROR;
            }
            *e = p;
        }

        if (html) {
            e = ngx_array_push(html);
            if (e == NULL) {
                return NGX_ERROR;
            }
            *e = p;
        }

        if ((text == NULL || html == NULL) && ngx_http_mail_plus_jmap_media(p))
        {
            e = ngx_array_push(att);
            if (e == NULL) {
                return NGX_ERROR;
            }
            *e = p;
        }
    }

    if (alt && text && html) {
        if (tlen == (ngx_int_t) text->nelts
            && hlen != (ngx_int_t) html->nelts)
        {
            for (k = hlen; k < html->nelts; k++) {
                e = ngx_array_push(text);
                if (e == NULL) {
                    return NGX_ERROR;
                }
                *e = ((void **) html->elts)[k];
            }
        }

        if (hlen == (ngx_int_t) html->nelts
            && tlen != (ngx_int_t) text->nelts)
        {
            for (k = tlen; k < text->nelts; k++) {
                e = ngx_array_push(html);
                if (e == NULL) {
                    return NGX_ERROR;
                }
                *e = ((void **) text->elts)[k];
            }
        }
    }

    return NGX_OK;
}


static json_t *
ngx_http_mail_plus_jmap_part_value(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t *part, const char *prop, ngx_str_t *blob)
{
    u_char      *p, *d, buf[NGX_INT64_LEN * 3 + 64];
    json_t      *list;
    ngx_str_t   *l;
    ngx_uint_t   i;

    if (ngx_strcmp(prop, "partId") == 0) {
        return part->multipart ? json_null()
               : json_stringn((char *) part->part_id.data, part->part_id.len);
    }

    if (ngx_strcmp(prop, "blobId") == 0) {
        if (part->multipart
            || blob->len + part->part_id.len + 3 > sizeof(buf))
        {
            return json_null();
        }

        d = buf;
        *d++ = 'P';
        d = ngx_cpymem(d, blob->data, blob->len);
        *d++ = '-';

        for (p = part->part_id.data;
             p < part->part_id.data + part->part_id.len;
             p++)
        {
            *d++ = (*p == '.') ? '_' : *p;
        }

        return json_stringn((char *) buf, d - buf);
    }

    if (ngx_strcmp(prop, "size") == 0) {
        if (part->multipart) {
            return json_integer(0);
        }

        if (part->encoding.len == 6
            && ngx_strncmp(part->encoding.data, "base64", 6) == 0)
        {
            /* the decoded size, from lines of 76 characters */
            return json_integer((json_int_t)
                                ((part->size - part->size / 78 * 2) / 4 * 3));
        }

        return json_integer((json_int_t) part->size);
    }

    if (ngx_strcmp(prop, "name") == 0) {
        return part->name.data ? json_stringn((char *) part->name.data,
                                              part->name.len)
                               : json_null();
    }

    if (ngx_strcmp(prop, "type") == 0) {
        if (part->type.len + part->subtype.len + 1 > sizeof(buf)) {
            return json_string("application/octet-stream");
        }

        d = ngx_cpymem(buf, part->type.data, part->type.len);
        *d++ = '/';
        d = ngx_cpymem(d, part->subtype.data, part->subtype.len);

        return ngx_http_mail_plus_jmap_jstr(pool, buf, d - buf);
    }

    if (ngx_strcmp(prop, "charset") == 0) {
        if (part->charset.len) {
            return ngx_http_mail_plus_jmap_jstr(pool, part->charset.data,
                                                part->charset.len);
        }

        return (part->type.len == 4
                && ngx_strncmp(part->type.data, "text", 4) == 0)
               ? json_string("us-ascii") : json_null();
    }

    if (ngx_strcmp(prop, "disposition") == 0) {
        return part->disposition.len
               ? ngx_http_mail_plus_jmap_jstr(pool, part->disposition.data,
                                              part->disposition.len)
               : json_null();
    }

    if (ngx_strcmp(prop, "cid") == 0) {
        return part->cid.len
               ? ngx_http_mail_plus_jmap_jstr(pool, part->cid.data,
                                              part->cid.len)
               : json_null();
    }

    if (ngx_strcmp(prop, "location") == 0) {
        return part->location.data
               ? ngx_http_mail_plus_jmap_jstr(pool, part->location.data,
                                              part->location.len)
               : json_null();
    }

    if (ngx_strcmp(prop, "language") == 0) {
        if (part->language == NULL || part->language->nelts == 0) {
            return json_null();
        }

        list = json_array();
        l = part->language->elts;

        for (i = 0; list && i < part->language->nelts; i++) {
            json_array_append_new(list,
                                  ngx_http_mail_plus_jmap_jstr(pool,
                                                               l[i].data,
                                                               l[i].len));
        }

        return list;
    }

    if (ngx_strcmp(prop, "headers") == 0) {
        return json_array();
    }

    if (ngx_strncmp(prop, "header:", 7) == 0) {
        return json_null();
    }

    return NULL;
}


json_t *
ngx_http_mail_plus_jmap_mime_part_json(ngx_pool_t *pool,
    ngx_http_mail_plus_jmap_part_t *part, json_t *properties,
    ngx_str_t *blob)
{
    json_t             *o, *v, *subs, *prop;
    size_t              i;
    ngx_uint_t          k;
    static const char  *defaults[] = {
        "partId", "blobId", "size", "name", "type", "charset",
        "disposition", "cid", "language", "location", NULL
    };

    o = json_object();
    if (o == NULL) {
        return NULL;
    }

    if (properties) {
        json_array_foreach(properties, i, prop) {
            v = ngx_http_mail_plus_jmap_part_value(pool, part,
                                                   json_string_value(prop),
                                                   blob);
            if (v) {
                json_object_set_new(o, json_string_value(prop), v);
            }
        }

    } else {
        for (k = 0; defaults[k]; k++) {
            v = ngx_http_mail_plus_jmap_part_value(pool, part, defaults[k],
                                                   blob);
            if (v) {
                json_object_set_new(o, defaults[k], v);
            }
        }
    }

    if (!part->multipart) {
        return o;
    }

    subs = json_array();
    if (subs == NULL) {
        json_decref(o);
        return NULL;
    }

    for (k = 0; k < part->nsub; k++) {
        v = ngx_http_mail_plus_jmap_mime_part_json(pool, part->sub[k],
                                                   properties, blob);
        if (v == NULL || json_array_append_new(subs, v) != 0) {
            json_decref(subs);
            json_decref(o);
            return NULL;
        }
    }

    json_object_set_new(o, "subParts", subs);

    return o;
}
