
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"


/*
 * SASL responses of the token mechanisms: OAUTHBEARER (RFC 7628) and
 * XOAUTH2 (the older form Google defined, still sent by many clients).
 * Both carry an OAuth 2.0 bearer token (RFC 6750) and, optionally, the
 * user it logs in; the router checks the token (token/).
 *
 *     OAUTHBEARER:  gs2-header ^A *(key "=" value ^A) ^A
 *                   gs2-header = ("n" / "y") "," ["a=" saslname] ","
 *     XOAUTH2:      "user=" user ^A "auth=Bearer " token ^A ^A
 *
 * A response is decoded where it lies, like the others
 * (ngx_mail_plus_sasl.c).  The token must be a b64token, the only shape
 * RFC 6750 gives a bearer token: whatever else was sent is refused before
 * it can reach a backend command or anything else.  Keys other than
 * "auth", "host" and "port" are ignored, as RFC 7628 asks.
 */


static ngx_int_t ngx_mail_plus_sasl_bearer(ngx_str_t *value,
    ngx_str_t *token);
static ngx_int_t ngx_mail_plus_sasl_saslname(ngx_str_t *name);


/* NGX_OK, NGX_DECLINED: a bad response (the protocol's syntax error) */

ngx_int_t
ngx_mail_plus_sasl_oauthbearer(ngx_str_t *response, ngx_str_t *user,
    ngx_str_t *token)
{
    u_char     *p, *last, *kv, *eq;
    ngx_str_t   key, value;
    ngx_uint_t  auth;

    if (ngx_mail_plus_sasl_decode(response) != NGX_OK) {
        return NGX_DECLINED;
    }

    p = response->data;
    last = p + response->len;

    /* no channel binding: "p=" is refused, "y" and "n" are taken */

    if (last - p < 3 || (p[0] != 'n' && p[0] != 'y') || p[1] != ',') {
        return NGX_DECLINED;
    }

    p += 2;

    ngx_str_null(user);

    if (p[0] == 'a') {
        if (last - p < 2 || p[1] != '=') {
            return NGX_DECLINED;
        }

        user->data = p + 2;

        p = ngx_strlchr(user->data, last, ',');
        if (p == NULL) {
            return NGX_DECLINED;
        }

        user->len = p - user->data;

        if (user->len == 0 || ngx_mail_plus_sasl_saslname(user) != NGX_OK) {
            return NGX_DECLINED;
        }
    }

    if (p == last || *p++ != ',') {
        return NGX_DECLINED;
    }

    /* the key-value pairs, each ended by ^A, the last one an empty one */

    if (p == last || *p++ != '\x01') {
        return NGX_DECLINED;
    }

    auth = 0;

    for ( ;; ) {
        kv = ngx_strlchr(p, last, '\x01');
        if (kv == NULL) {
            return NGX_DECLINED;
        }

        if (kv == p) {
            /* the empty pair ends the response, nothing may follow */

            if (kv + 1 != last || !auth) {
                return NGX_DECLINED;
            }

            return NGX_OK;
        }

        eq = ngx_strlchr(p, kv, '=');
        if (eq == NULL || eq == p) {
            return NGX_DECLINED;
        }

        key.data = p;
        key.len = eq - p;
        value.data = eq + 1;
        value.len = kv - (eq + 1);

        for (p = key.data; p < key.data + key.len; p++) {
            if ((*p | 0x20) < 'a' || (*p | 0x20) > 'z') {
                return NGX_DECLINED;
            }
        }

        if (key.len == 4 && ngx_strncmp(key.data, "auth", 4) == 0) {
            if (auth || ngx_mail_plus_sasl_bearer(&value, token) != NGX_OK) {
                return NGX_DECLINED;
            }

            auth = 1;
        }

        p = kv + 1;
    }
}


ngx_int_t
ngx_mail_plus_sasl_xoauth2(ngx_str_t *response, ngx_str_t *user,
    ngx_str_t *token)
{
    u_char     *p, *last, *sep;
    ngx_str_t   value;

    if (ngx_mail_plus_sasl_decode(response) != NGX_OK) {
        return NGX_DECLINED;
    }

    p = response->data;
    last = p + response->len;

    if (last - p < 5 || ngx_strncmp(p, "user=", 5) != 0) {
        return NGX_DECLINED;
    }

    user->data = p + 5;

    sep = ngx_strlchr(user->data, last, '\x01');
    if (sep == NULL) {
        return NGX_DECLINED;
    }

    user->len = sep - user->data;

    p = sep + 1;

    if (last - p < 5 || ngx_strncmp(p, "auth=", 5) != 0) {
        return NGX_DECLINED;
    }

    value.data = p + 5;

    sep = ngx_strlchr(value.data, last, '\x01');
    if (sep == NULL || last - sep != 2 || sep[1] != '\x01') {
        return NGX_DECLINED;
    }

    value.len = sep - value.data;

    return ngx_mail_plus_sasl_bearer(&value, token);
}


/* "Bearer" SP b64token (RFC 6750, section 2.1), the scheme in any case */

static ngx_int_t
ngx_mail_plus_sasl_bearer(ngx_str_t *value, ngx_str_t *token)
{
    u_char  *p, *last;

    if (value->len < 8
        || ngx_strncasecmp(value->data, (u_char *) "Bearer ", 7) != 0)
    {
        return NGX_DECLINED;
    }

    token->data = value->data + 7;
    token->len = value->len - 7;

    last = token->data + token->len;

    for (p = token->data; p < last; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
            || (*p >= '0' && *p <= '9')
            || *p == '-' || *p == '.' || *p == '_' || *p == '~'
            || *p == '+' || *p == '/')
        {
            continue;
        }

        break;
    }

    if (p == token->data) {
        return NGX_DECLINED;
    }

    /* only "=" may follow, as padding */

    while (p < last && *p == '=') {
        p++;
    }

    return (p == last) ? NGX_OK : NGX_DECLINED;
}


/* RFC 5801's saslname: "=2C" is ",", "=3D" is "=", unescaped in place */

static ngx_int_t
ngx_mail_plus_sasl_saslname(ngx_str_t *name)
{
    u_char  *p, *q, *last;

    q = name->data;
    last = name->data + name->len;

    for (p = name->data; p < last; p++) {

        if (*p != '=') {
            *q++ = *p;
            continue;
        }

        if (last - p < 3) {
            return NGX_DECLINED;
        }

        if (p[1] == '2' && (p[2] == 'C' || p[2] == 'c')) {
            *q++ = ',';

        } else if (p[1] == '3' && (p[2] == 'D' || p[2] == 'd')) {
            *q++ = '=';

        } else {
            return NGX_DECLINED;
        }

        p += 2;
    }

    name->len = q - name->data;

    return NGX_OK;
}
