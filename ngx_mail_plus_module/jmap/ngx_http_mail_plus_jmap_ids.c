
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_md5.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * The ids the mail methods give (ngx_http_mail_plus_jmap.h): made from
 * the mailbox's name, its UIDVALIDITY and the message's UID, and read
 * back; and the Email state, made from each mailbox's UIDVALIDITY,
 * UIDNEXT and HIGHESTMODSEQ, and read back.  Reading is strict, as an id
 * is a client's string: the exact form, numbers without leading zeros
 * and within 32 bits (UIDVALIDITY and UID are nz-number, RFC 3501), part
 * numbers of at most 16 levels.
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_PART_LEVELS  16
#define NGX_HTTP_MAIL_PLUS_JMAP_SINCE_LEN    24

/* a state string of at most 4096 mailboxes */
#define NGX_HTTP_MAIL_PLUS_JMAP_STATE_MAX                                     \
    (1 + 4 * (4096 * NGX_HTTP_MAIL_PLUS_JMAP_SINCE_LEN / 3 + 1))


static u_char *ngx_http_mail_plus_jmap_ref_number(u_char *p, u_char *last,
    uint64_t *n);
static u_char *ngx_http_mail_plus_jmap_hex_bytes(u_char *p, u_char *hex,
    ngx_uint_t n);
static u_char *ngx_http_mail_plus_jmap_put(u_char *p, uint64_t v,
    ngx_uint_t n);
static u_char *ngx_http_mail_plus_jmap_get(u_char *p, ngx_uint_t n,
    uint64_t *v);


void
ngx_http_mail_plus_jmap_mailbox_id(ngx_str_t *name, u_char *id)
{
    u_char     digest[16];
    ngx_md5_t  md5;

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, name->data, name->len);
    ngx_md5_final(digest, &md5);

    id[0] = 'M';
    ngx_hex_dump(id + 1, digest, 8);
}


ngx_int_t
ngx_http_mail_plus_jmap_ref_id(ngx_pool_t *pool, u_char kind,
    ngx_http_mail_plus_jmap_ref_t *ref, ngx_str_t *id)
{
    u_char      *p, *last;
    size_t       len;
    ngx_uint_t   i;

    len = 1 + 16 + 2 * (1 + NGX_INT64_LEN) + 1 + ref->part.len;

    id->data = ngx_pnalloc(pool, len);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    p = id->data;
    *p++ = kind;
    p = ngx_cpymem(p, ref->mailbox, 16);
    p = ngx_sprintf(p, "-%uL-%uL", ref->uidvalidity, ref->uid);

    if (kind == 'P') {
        *p++ = '-';
        last = ngx_cpymem(p, ref->part.data, ref->part.len);

        for (i = 0; p + i < last; i++) {
            if (p[i] == '.') {
                p[i] = '_';
            }
        }

        p = last;
    }

    id->len = p - id->data;

    return NGX_OK;
}


u_char
ngx_http_mail_plus_jmap_ref(ngx_pool_t *pool, ngx_str_t *id,
    ngx_http_mail_plus_jmap_ref_t *ref)
{
    u_char      *p, *last, *part, kind;
    ngx_uint_t   i, levels;

    if (id->len < 1 + 16 + 4) {
        return 0;
    }

    p = id->data;
    last = p + id->len;
    kind = *p++;

    if (kind != 'E' && kind != 'T' && kind != 'B' && kind != 'P') {
        return 0;
    }

    for (i = 0; i < 16; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    ngx_memcpy(ref->mailbox, p, 16);
    p += 16;

    if (*p++ != '-') {
        return 0;
    }

    p = ngx_http_mail_plus_jmap_ref_number(p, last, &ref->uidvalidity);
    if (p == NULL || p == last || *p++ != '-') {
        return 0;
    }

    p = ngx_http_mail_plus_jmap_ref_number(p, last, &ref->uid);
    if (p == NULL) {
        return 0;
    }

    ngx_str_null(&ref->part);

    if (kind != 'P') {
        return p == last ? kind : 0;
    }

    /* "-" and 1*16 nz-numbers joined by "_", read as "1.2.3" */

    if (p == last || *p++ != '-' || p == last) {
        return 0;
    }

    part = ngx_pnalloc(pool, last - p);
    if (part == NULL) {
        return 0;
    }

    ref->part.data = part;
    levels = 0;

    for ( ;; ) {
        if (*p < '1' || *p > '9'
            || ++levels > NGX_HTTP_MAIL_PLUS_JMAP_PART_LEVELS)
        {
            return 0;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            if ((size_t) (part - ref->part.data) >= 4 * 16) {
                return 0;   /* a level of more than 3 digits, on average */
            }

            *part++ = *p++;
        }

        if (p == last) {
            break;
        }

        if (*p++ != '_' || p == last) {
            return 0;
        }

        *part++ = '.';
    }

    ref->part.len = part - ref->part.data;

    return kind;
}


ngx_int_t
ngx_http_mail_plus_jmap_email_state(ngx_pool_t *pool, ngx_array_t *mailboxes,
    ngx_str_t *state)
{
    u_char                             *p;
    ngx_str_t                           raw, enc;
    ngx_uint_t                          i, n;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    mb = mailboxes->elts;
    n = 0;

    for (i = 0; i < mailboxes->nelts; i++) {
        if (!mb[i].noselect) {
            n++;
        }
    }

    raw.len = n * NGX_HTTP_MAIL_PLUS_JMAP_SINCE_LEN;
    raw.data = ngx_pnalloc(pool, raw.len + 1);
    state->data = ngx_pnalloc(pool, 1 + ngx_base64_encoded_length(raw.len));

    if (raw.data == NULL || state->data == NULL) {
        return NGX_ERROR;
    }

    p = raw.data;

    for (i = 0; i < mailboxes->nelts; i++) {
        if (mb[i].noselect) {
            continue;
        }

        p = ngx_http_mail_plus_jmap_hex_bytes(p, mb[i].id + 1, 8);
        p = ngx_http_mail_plus_jmap_put(p, mb[i].uidvalidity, 4);
        p = ngx_http_mail_plus_jmap_put(p, mb[i].uidnext, 4);
        p = ngx_http_mail_plus_jmap_put(p, mb[i].highestmodseq, 8);
    }

    state->data[0] = 'S';
    enc.data = state->data + 1;
    enc.len = 0;

    if (raw.len) {
        ngx_encode_base64url(&enc, &raw);
    }

    state->len = 1 + enc.len;

    return NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_email_since(ngx_pool_t *pool, ngx_str_t *state,
    ngx_array_t **since)
{
    u_char                           *p;
    uint64_t                          v;
    ngx_str_t                         src, raw;
    ngx_uint_t                        i, n;
    ngx_http_mail_plus_jmap_since_t  *s;

    if (state->len == 0 || state->data[0] != 'S'
        || state->len > NGX_HTTP_MAIL_PLUS_JMAP_STATE_MAX)
    {
        return NGX_DECLINED;
    }

    src.data = state->data + 1;
    src.len = state->len - 1;

    for (i = 0; i < src.len; i++) {
        p = &src.data[i];

        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            return NGX_DECLINED;
        }
    }

    raw.data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (raw.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(&raw, &src) != NGX_OK
        || raw.len % NGX_HTTP_MAIL_PLUS_JMAP_SINCE_LEN)
    {
        return NGX_DECLINED;
    }

    n = raw.len / NGX_HTTP_MAIL_PLUS_JMAP_SINCE_LEN;

    *since = ngx_array_create(pool, n ? n : 1,
                              sizeof(ngx_http_mail_plus_jmap_since_t));
    if (*since == NULL) {
        return NGX_ERROR;
    }

    p = raw.data;

    for (i = 0; i < n; i++) {
        s = ngx_array_push(*since);
        if (s == NULL) {
            return NGX_ERROR;
        }

        ngx_hex_dump(s->mailbox, p, 8);
        p += 8;

        p = ngx_http_mail_plus_jmap_get(p, 4, &v);
        s->uidvalidity = (uint32_t) v;
        p = ngx_http_mail_plus_jmap_get(p, 4, &v);
        s->uidnext = (uint32_t) v;
        p = ngx_http_mail_plus_jmap_get(p, 8, &s->highestmodseq);
    }

    return NGX_OK;
}


static u_char *
ngx_http_mail_plus_jmap_hex_bytes(u_char *p, u_char *hex, ngx_uint_t n)
{
    ngx_int_t   hi, lo;
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        hi = ngx_hextoi(&hex[2 * i], 1);
        lo = ngx_hextoi(&hex[2 * i + 1], 1);
        *p++ = (u_char) ((hi << 4) | lo);
    }

    return p;
}


static u_char *
ngx_http_mail_plus_jmap_put(u_char *p, uint64_t v, ngx_uint_t n)
{
    while (n--) {
        *p++ = (u_char) (v >> (8 * n));
    }

    return p;
}


static u_char *
ngx_http_mail_plus_jmap_get(u_char *p, ngx_uint_t n, uint64_t *v)
{
    *v = 0;

    while (n--) {
        *v = (*v << 8) | *p++;
    }

    return p;
}


/* an nz-number of at most 32 bits, without leading zeros */

static u_char *
ngx_http_mail_plus_jmap_ref_number(u_char *p, u_char *last, uint64_t *n)
{
    uint64_t  v;

    if (p == last || *p < '1' || *p > '9') {
        return NULL;
    }

    v = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');

        if (v > 0xffffffff) {
            return NULL;
        }
    }

    *n = v;

    return p;
}
