
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_imap_client.h"


/*
 * IMAP's modified UTF-7 (RFC 3501, section 5.1.3) for mailbox names, both
 * ways, strict: printable US-ASCII but "&" stands for itself, "&-" for
 * "&", anything else is "&", UTF-16BE in base64 with "," for "/" and no
 * padding, and "-".  Refused as not canonical: a base64 run that encodes
 * printable US-ASCII, an empty run, two runs one after the other, padding
 * bits that are not zero or make a whole base64 digit, a lone surrogate, a
 * run without its "-"; refused in any name: a control character (C0, DEL)
 * and bytes outside US-ASCII in the encoded form.  On the UTF-8 side only
 * well-formed UTF-8 is taken (no overlong forms, no surrogates).
 */


static u_char *ngx_mail_plus_imap_utf7_run(u_char **pp, u_char *last,
    u_char *d);
static ngx_int_t ngx_mail_plus_imap_utf8_char(u_char **pp, u_char *last,
    uint32_t *cp);
static u_char *ngx_mail_plus_imap_utf8_put(u_char *d, uint32_t cp);
static ngx_int_t ngx_mail_plus_imap_utf7_digit(u_char c);


static u_char  ngx_mail_plus_imap_utf7_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";


ngx_int_t
ngx_mail_plus_imap_utf7_decode(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out)
{
    u_char      *p, *last, *d, c;
    ngx_uint_t   after_run;

    d = ngx_pnalloc(pool, in->len * 2 + 1);
    if (d == NULL) {
        return NGX_ERROR;
    }

    out->data = d;

    p = in->data;
    last = p + in->len;
    after_run = 0;

    while (p < last) {
        c = *p++;

        if (c < 0x20 || c > 0x7e) {
            return NGX_DECLINED;
        }

        if (c != '&') {
            *d++ = c;
            after_run = 0;
            continue;
        }

        if (p < last && *p == '-') {
            *d++ = '&';
            p++;
            after_run = 0;
            continue;
        }

        /* two runs in a row are one, canonically */

        if (after_run) {
            return NGX_DECLINED;
        }

        d = ngx_mail_plus_imap_utf7_run(&p, last, d);
        if (d == NULL) {
            return NGX_DECLINED;
        }

        after_run = 1;
    }

    out->len = d - out->data;

    return NGX_OK;
}


/* a base64 run after "&", up to its "-", to UTF-8 at d; NULL if bad */

static u_char *
ngx_mail_plus_imap_utf7_run(u_char **pp, u_char *last, u_char *d)
{
    u_char      *p, c;
    uint32_t     bits, u, hi, cp;
    ngx_int_t    v;
    ngx_uint_t   nbits, units;

    p = *pp;
    bits = 0;
    nbits = 0;
    units = 0;
    hi = 0;

    for ( ;; ) {
        if (p == last) {
            return NULL;
        }

        c = *p++;

        if (c == '-') {
            break;
        }

        v = ngx_mail_plus_imap_utf7_digit(c);
        if (v < 0) {
            return NULL;
        }

        bits = (bits << 6) | (uint32_t) v;
        nbits += 6;

        if (nbits < 16) {
            continue;
        }

        nbits -= 16;
        u = (bits >> nbits) & 0xffff;
        bits &= (1u << nbits) - 1;
        units++;

        if (hi) {
            if (u < 0xdc00 || u > 0xdfff) {
                return NULL;
            }

            cp = 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00);
            hi = 0;

        } else if (u >= 0xd800 && u <= 0xdbff) {
            hi = u;
            continue;

        } else if ((u >= 0xdc00 && u <= 0xdfff) || u < 0x80) {

            /* a lone low surrogate; US-ASCII: printable is not
               canonical, a control is refused */

            return NULL;

        } else {
            cp = u;
        }

        d = ngx_mail_plus_imap_utf8_put(d, cp);
    }

    /* something, no lone high surrogate, the padding short and zero */

    if (units == 0 || hi || nbits >= 6 || bits != 0) {
        return NULL;
    }

    *pp = p;

    return d;
}


ngx_int_t
ngx_mail_plus_imap_utf7_encode(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out)
{
    u_char      *p, *last, *d;
    uint32_t     cp, bits, u[2];
    ngx_uint_t   nbits, n, i, run;

    d = ngx_pnalloc(pool, in->len * 3 + 2);
    if (d == NULL) {
        return NGX_ERROR;
    }

    out->data = d;

    p = in->data;
    last = p + in->len;
    run = 0;
    bits = 0;
    nbits = 0;

    while (p < last) {
        if (ngx_mail_plus_imap_utf8_char(&p, last, &cp) != NGX_OK) {
            return NGX_DECLINED;
        }

        if (cp < 0x20 || cp == 0x7f) {
            return NGX_DECLINED;
        }

        if (cp < 0x80) {
            if (run) {
                if (nbits) {
                    *d++ = ngx_mail_plus_imap_utf7_b64[(bits << (6 - nbits))
                                                       & 0x3f];
                }

                *d++ = '-';
                run = 0;
                bits = 0;
                nbits = 0;
            }

            *d++ = (u_char) cp;

            if (cp == '&') {
                *d++ = '-';
            }

            continue;
        }

        if (!run) {
            *d++ = '&';
            run = 1;
        }

        if (cp >= 0x10000) {
            u[0] = 0xd800 + ((cp - 0x10000) >> 10);
            u[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
            n = 2;

        } else {
            u[0] = cp;
            n = 1;
        }

        for (i = 0; i < n; i++) {
            bits = (bits << 16) | u[i];
            nbits += 16;

            while (nbits >= 6) {
                nbits -= 6;
                *d++ = ngx_mail_plus_imap_utf7_b64[(bits >> nbits) & 0x3f];
            }

            bits &= (1u << nbits) - 1;
        }
    }

    if (run) {
        if (nbits) {
            *d++ = ngx_mail_plus_imap_utf7_b64[(bits << (6 - nbits)) & 0x3f];
        }

        *d++ = '-';
    }

    out->len = d - out->data;

    return NGX_OK;
}


/* a name in UTF-8 fit to send as it is: well-formed, no control */

ngx_int_t
ngx_mail_plus_imap_utf8_valid(ngx_str_t *s)
{
    u_char    *p, *last;
    uint32_t   cp;

    p = s->data;
    last = p + s->len;

    while (p < last) {
        if (ngx_mail_plus_imap_utf8_char(&p, last, &cp) != NGX_OK
            || cp < 0x20 || cp == 0x7f)
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_imap_utf8_char(u_char **pp, u_char *last, uint32_t *cp)
{
    u_char      *p, c;
    uint32_t     v;
    ngx_uint_t   n;

    p = *pp;
    c = *p++;

    if (c < 0x80) {
        *cp = c;
        *pp = p;
        return NGX_OK;
    }

    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        v = c & 0x1f;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        v = c & 0x0f;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        v = c & 0x07;

    } else {
        return NGX_DECLINED;
    }

    if ((size_t) (last - p) < n) {
        return NGX_DECLINED;
    }

    while (n--) {
        c = *p++;

        if ((c & 0xc0) != 0x80) {
            return NGX_DECLINED;
        }

        v = (v << 6) | (c & 0x3f);
    }

    if ((p - *pp == 3 && v < 0x800)
        || (p - *pp == 4 && (v < 0x10000 || v > 0x10ffff))
        || (v >= 0xd800 && v <= 0xdfff))
    {
        return NGX_DECLINED;
    }

    *cp = v;
    *pp = p;

    return NGX_OK;
}


static u_char *
ngx_mail_plus_imap_utf8_put(u_char *d, uint32_t cp)
{
    if (cp < 0x800) {
        *d++ = (u_char) (0xc0 | (cp >> 6));

    } else if (cp < 0x10000) {
        *d++ = (u_char) (0xe0 | (cp >> 12));
        *d++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));

    } else {
        *d++ = (u_char) (0xf0 | (cp >> 18));
        *d++ = (u_char) (0x80 | ((cp >> 12) & 0x3f));
        *d++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
    }

    *d++ = (u_char) (0x80 | (cp & 0x3f));

    return d;
}


static ngx_int_t
ngx_mail_plus_imap_utf7_digit(u_char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '+') {
        return 62;
    }

    if (c == ',') {
        return 63;
    }

    return -1;
}
