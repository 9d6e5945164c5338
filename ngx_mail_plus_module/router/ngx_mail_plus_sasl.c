
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"


/*
 * SASL responses of the PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195)
 * mechanisms, for the POP3 and IMAP sessions before login and for SMTP
 * AUTH.  A response is decoded where it lies (base64 is never shorter
 * than what it encodes), and the results point into it: the caller keeps
 * the text until it has copied them.
 *
 * Base64 is taken strictly: only the alphabet, "=" only as the padding at
 * the end, no padding on a group that needs none.  Nothing is cut at a
 * NUL: a PLAIN password is every byte after the second NUL, whatever it
 * holds, so that the router sees exactly what the client sent (and
 * refuses control bytes).
 */


static ngx_int_t ngx_mail_plus_sasl_base64(u_char ch);


/* NGX_OK: "text" holds the decoded bytes; NGX_DECLINED: not base64 */

ngx_int_t
ngx_mail_plus_sasl_decode(ngx_str_t *text)
{
    size_t  len, pad, i;

    len = text->len;
    pad = 0;

    while (len && text->data[len - 1] == '=') {
        len--;
        pad++;
    }

    if (pad > 2 || len % 4 == 1) {
        return NGX_DECLINED;
    }

    /* padding, when there is some, completes the last group */

    if (pad && (len + pad) % 4 != 0) {
        return NGX_DECLINED;
    }

    for (i = 0; i < len; i++) {
        if (ngx_mail_plus_sasl_base64(text->data[i]) != NGX_OK) {
            return NGX_DECLINED;
        }
    }

    /* ngx_decode_base64() writes behind what it reads: in place is safe */

    if (ngx_decode_base64(text, text) != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* [authzid] NUL authcid NUL password; the authzid empty or the login */

ngx_int_t
ngx_mail_plus_sasl_plain(ngx_str_t *response, ngx_str_t *login,
    ngx_str_t *password)
{
    u_char     *p, *last, *nul;
    ngx_str_t   authzid;

    if (ngx_mail_plus_sasl_decode(response) != NGX_OK) {
        return NGX_DECLINED;
    }

    p = response->data;
    last = p + response->len;

    nul = ngx_strlchr(p, last, '\0');
    if (nul == NULL) {
        return NGX_DECLINED;
    }

    authzid.data = p;
    authzid.len = nul - p;

    p = nul + 1;

    nul = ngx_strlchr(p, last, '\0');
    if (nul == NULL || nul == p) {
        return NGX_DECLINED;
    }

    login->data = p;
    login->len = nul - p;

    password->data = nul + 1;
    password->len = last - (nul + 1);

    if (authzid.len
        && (authzid.len != login->len
            || ngx_memcmp(authzid.data, login->data, login->len) != 0))
    {
        return NGX_ABORT;
    }

    return NGX_OK;
}


/* LOGIN: one response, the username or the password */

ngx_int_t
ngx_mail_plus_sasl_login(ngx_str_t *response, ngx_str_t *value)
{
    if (ngx_mail_plus_sasl_decode(response) != NGX_OK) {
        return NGX_DECLINED;
    }

    *value = *response;

    return NGX_OK;
}


/* CRAM-MD5: user SP digest, the digest 32 hexadecimal digits */

ngx_int_t
ngx_mail_plus_sasl_cram_md5(ngx_str_t *response, ngx_str_t *login,
    ngx_str_t *digest)
{
    u_char  *p, *sp, ch;

    if (ngx_mail_plus_sasl_decode(response) != NGX_OK) {
        return NGX_DECLINED;
    }

    /* the digest is after the last space: a user name may have spaces */

    sp = NULL;

    for (p = response->data; p < response->data + response->len; p++) {
        if (*p == ' ') {
            sp = p;
        }
    }

    if (sp == NULL || sp == response->data) {
        return NGX_DECLINED;
    }

    digest->data = sp + 1;
    digest->len = response->data + response->len - (sp + 1);

    if (digest->len != 32) {
        return NGX_DECLINED;
    }

    for (p = digest->data; p < digest->data + digest->len; p++) {
        if (*p >= '0' && *p <= '9') {
            continue;
        }

        ch = (u_char) (*p | 0x20);

        if (ch < 'a' || ch > 'f') {
            return NGX_DECLINED;
        }
    }

    login->data = response->data;
    login->len = sp - response->data;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_sasl_base64(u_char ch)
{
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
        || (ch >= '0' && ch <= '9') || ch == '+' || ch == '/')
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}
