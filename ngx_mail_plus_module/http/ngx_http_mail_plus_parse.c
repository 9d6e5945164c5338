
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_http_mail_plus_parse.h"


/*
 * What HTTP clients send to the HTTP modules, parsed without a request:
 * buffers in, results out, so that the fuzz targets (fuzz/auth_http_request
 * and fuzz/submit_query) run exactly this code.
 *
 * The auth_http request of stock nginx carries the login and the password
 * %-escaped (Auth-User, Auth-Pass); the submission's query string carries
 * the envelope %-escaped.  Both are decoded strictly: "%" must be followed
 * by two hex digits, since nginx escapes "%" itself; anything else is not
 * what nginx sends and is refused.  What the decoded values may hold is
 * the router's business (no control character in a login or a password)
 * and the SMTP parser's (addresses).
 */


static ngx_int_t ngx_http_mail_plus_hex(u_char ch);
static ngx_int_t ngx_http_mail_plus_auth_set(ngx_str_t *field,
    ngx_str_t *value);
static ngx_int_t ngx_http_mail_plus_auth_rcpt(ngx_str_t *value,
    ngx_str_t *addr);
static ngx_int_t ngx_http_mail_plus_submit_value(ngx_str_t *escaped,
    ngx_pool_t *pool, ngx_str_t *value, char **err);
static ngx_int_t ngx_http_mail_plus_submit_arg(
    ngx_http_mail_plus_submit_query_t *q, ngx_str_t *name, ngx_str_t *value,
    char **err);


static ngx_str_t  ngx_http_mail_plus_auth_protocols[] = {
    ngx_string("imap"),                    /* NGX_MAIL_PLUS_IMAP */
    ngx_string("pop3"),                    /* NGX_MAIL_PLUS_POP3 */
    ngx_string("smtp")                     /* NGX_MAIL_PLUS_SMTP */
};


static ngx_inline ngx_uint_t
ngx_http_mail_plus_is(ngx_str_t *s, char *text)
{
    size_t  len;

    len = ngx_strlen(text);

    return s->len == len && ngx_strncasecmp(s->data, (u_char *) text, len)
                            == 0;
}


/* "%XX" decoded; dst has room for src->len bytes; NGX_DECLINED: malformed */

ngx_int_t
ngx_http_mail_plus_unescape(ngx_str_t *src, u_char *dst, size_t *len)
{
    u_char     *p, *last, *q;
    ngx_int_t   hi, lo;

    *len = 0;

    if (src->len == 0) {
        return NGX_OK;      /* a header not sent: no data */
    }

    q = dst;
    last = src->data + src->len;

    for (p = src->data; p < last; p++) {

        if (*p != '%') {
            *q++ = *p;
            continue;
        }

        if (last - p < 3) {
            return NGX_DECLINED;
        }

        hi = ngx_http_mail_plus_hex(p[1]);
        lo = ngx_http_mail_plus_hex(p[2]);

        if (hi < 0 || lo < 0) {
            return NGX_DECLINED;
        }

        *q++ = (u_char) (hi << 4 | lo);
        p += 2;
    }

    *len = q - dst;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_hex(u_char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }

    ch |= 0x20;

    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }

    return -1;
}


/*
 * one request header; those the endpoint reads must come once each:
 * NGX_DECLINED for a repeated one
 */

ngx_int_t
ngx_http_mail_plus_auth_header(ngx_http_mail_plus_auth_request_t *ar,
    ngx_str_t *key, ngx_str_t *value)
{
    if (ngx_http_mail_plus_is(key, "Auth-Method")) {
        return ngx_http_mail_plus_auth_set(&ar->method, value);
    }

    if (ngx_http_mail_plus_is(key, "Auth-User")) {
        return ngx_http_mail_plus_auth_set(&ar->user, value);
    }

    if (ngx_http_mail_plus_is(key, "Auth-Pass")) {
        return ngx_http_mail_plus_auth_set(&ar->pass, value);
    }

    if (ngx_http_mail_plus_is(key, "Auth-Protocol")) {
        return ngx_http_mail_plus_auth_set(&ar->protocol, value);
    }

    if (ngx_http_mail_plus_is(key, "Auth-SMTP-To")) {
        return ngx_http_mail_plus_auth_set(&ar->rcpt, value);
    }

    if (ngx_http_mail_plus_is(key, "Auth-Salt")) {
        return ngx_http_mail_plus_auth_set(&ar->salt, value);
    }

    if (ngx_http_mail_plus_is(key, "Client-IP")) {
        return ngx_http_mail_plus_auth_set(&ar->client, value);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_auth_set(ngx_str_t *field, ngx_str_t *value)
{
    if (field->data) {
        return NGX_DECLINED;
    }

    *field = *value;

    if (field->data == NULL) {
        field->data = (u_char *) "";
    }

    return NGX_OK;
}


/*
 * the headers are in: the protocol, the method, the login and the password
 * decoded; NGX_OK, NGX_DECLINED with *err for a request nginx would not
 * send, NGX_ERROR
 */

ngx_int_t
ngx_http_mail_plus_auth_request(ngx_http_mail_plus_auth_request_t *ar,
    ngx_pool_t *pool, char **err)
{
    size_t      len;
    ngx_uint_t  k;

    for (k = 0; k < 3; k++) {
        if (ar->protocol.len == ngx_http_mail_plus_auth_protocols[k].len
            && ngx_strncasecmp(ar->protocol.data,
                               ngx_http_mail_plus_auth_protocols[k].data,
                               ar->protocol.len)
               == 0)
        {
            break;
        }
    }

    if (k == 3) {
        *err = "invalid Auth-Protocol";
        return NGX_DECLINED;
    }

    ar->proto = k;
    ar->digest = NGX_MAIL_AUTH_PLAIN;

    if (ngx_http_mail_plus_is(&ar->method, "none")) {

        /* unauthenticated SMTP: the first recipient's mailbox decides */

        if (k != NGX_MAIL_PLUS_SMTP) {
            *err = "Auth-Method \"none\" for another protocol than SMTP";
            return NGX_DECLINED;
        }

        if (ngx_http_mail_plus_auth_rcpt(&ar->rcpt, &ar->login) != NGX_OK) {
            *err = "invalid Auth-SMTP-To";
            return NGX_DECLINED;
        }

        ar->none = 1;

        return NGX_OK;
    }

    if (ngx_http_mail_plus_is(&ar->method, "apop")) {
        ar->digest = NGX_MAIL_AUTH_APOP;

    } else if (ngx_http_mail_plus_is(&ar->method, "cram-md5")) {
        ar->digest = NGX_MAIL_AUTH_CRAM_MD5;

    } else if (ngx_http_mail_plus_is(&ar->method, "oauthbearer")) {
        ar->token = NGX_MAIL_PLUS_SASL_OAUTHBEARER;

    } else if (ngx_http_mail_plus_is(&ar->method, "xoauth2")) {
        ar->token = NGX_MAIL_PLUS_SASL_XOAUTH2;

    } else if (!ngx_http_mail_plus_is(&ar->method, "plain")
               && !ngx_http_mail_plus_is(&ar->method, "login"))
    {
        /* EXTERNAL needs what the router does not keep */
        ar->unsupported = 1;
    }

    ar->login.data = ngx_pnalloc(pool, ar->user.len + 1);
    ar->password.data = ngx_pnalloc(pool, ar->pass.len + 1);
    if (ar->login.data == NULL || ar->password.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_mail_plus_unescape(&ar->user, ar->login.data, &len)
        != NGX_OK)
    {
        *err = "malformed escape in Auth-User";
        return NGX_DECLINED;
    }

    ar->login.len = len;

    if (ngx_http_mail_plus_unescape(&ar->pass, ar->password.data, &len)
        != NGX_OK)
    {
        *err = "malformed escape in Auth-Pass";
        return NGX_DECLINED;
    }

    ar->password.len = len;

    return NGX_OK;
}


/*
 * nginx sends the client's whole command, "RCPT TO:<addr> params": the
 * address between the brackets (or up to a space, without them)
 */

static ngx_int_t
ngx_http_mail_plus_auth_rcpt(ngx_str_t *value, ngx_str_t *addr)
{
    u_char  *p, *last, *start;

    if (value->len == 0) {
        ngx_str_set(addr, "");
        return NGX_OK;
    }

    p = value->data;
    last = p + value->len;

    if (value->len >= sizeof("RCPT TO:") - 1
        && ngx_strncasecmp(p, (u_char *) "RCPT TO:", sizeof("RCPT TO:") - 1)
           == 0)
    {
        p += sizeof("RCPT TO:") - 1;
    }

    while (p < last && *p == ' ') {
        p++;
    }

    if (p < last && *p == '<') {
        start = ++p;

        while (p < last && *p != '>') {
            p++;
        }

        if (p == last) {
            return NGX_DECLINED;
        }

    } else {
        start = p;

        while (p < last && *p != ' ') {
            p++;
        }
    }

    addr->data = start;
    addr->len = p - start;

    return NGX_OK;
}


/*
 * the submission's query string: from=, to= (repeated), notify=, ret=,
 * envid=, each value decoded and free of spaces and control characters;
 * NGX_OK, NGX_DECLINED with *err, NGX_ERROR
 */

ngx_int_t
ngx_http_mail_plus_submit_query(ngx_str_t *args, ngx_pool_t *pool,
    ngx_http_mail_plus_submit_query_t *q, char **err)
{
    u_char     *p, *last, *end, *eq;
    ngx_int_t   rc;
    ngx_str_t   name, value, escaped;

    if (ngx_array_init(&q->to, pool, 4, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_null(&q->from);
    ngx_str_null(&q->notify);
    ngx_str_null(&q->ret);
    ngx_str_null(&q->envid);
    q->has_from = 0;

    p = args->data;
    last = p + args->len;

    for ( /* void */ ; p < last; p = end + 1) {

        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        if (end == p) {
            continue;
        }

        eq = ngx_strlchr(p, end, '=');
        if (eq == NULL) {
            eq = end;
        }

        name.data = p;
        name.len = eq - p;

        escaped.data = (eq < end) ? eq + 1 : end;
        escaped.len = end - escaped.data;

        rc = ngx_http_mail_plus_submit_value(&escaped, pool, &value, err);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_mail_plus_submit_arg(q, &name, &value, err);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (q->to.nelts == 0) {
        *err = "no recipient: to= is required";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * an argument's value decoded into pool memory: "+" is kept, as it is
 * common in addresses (a space is "%20"); no space or control character
 */

static ngx_int_t
ngx_http_mail_plus_submit_value(ngx_str_t *escaped, ngx_pool_t *pool,
    ngx_str_t *value, char **err)
{
    size_t      len;
    ngx_uint_t  i;

    value->data = ngx_pnalloc(pool, escaped->len + 1);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_mail_plus_unescape(escaped, value->data, &len) != NGX_OK) {
        *err = "a malformed %-escape in an argument";
        return NGX_DECLINED;
    }

    value->len = len;

    for (i = 0; i < value->len; i++) {
        if (value->data[i] <= ' ' || value->data[i] == 0x7f) {
            *err = "a space or a control character in an argument";
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* a decoded argument into its field: to= repeated, the others once */

static ngx_int_t
ngx_http_mail_plus_submit_arg(ngx_http_mail_plus_submit_query_t *q,
    ngx_str_t *name, ngx_str_t *value, char **err)
{
    ngx_str_t  *to;

    if (name->len == 2 && ngx_strncmp(name->data, "to", 2) == 0) {
        to = ngx_array_push(&q->to);
        if (to == NULL) {
            return NGX_ERROR;
        }

        *to = *value;

    } else if (name->len == 4 && ngx_strncmp(name->data, "from", 4) == 0
               && !q->has_from)
    {
        q->from = *value;
        q->has_from = 1;

    } else if (name->len == 6 && ngx_strncmp(name->data, "notify", 6) == 0
               && q->notify.data == NULL)
    {
        q->notify = *value;

    } else if (name->len == 3 && ngx_strncmp(name->data, "ret", 3) == 0
               && q->ret.data == NULL)
    {
        q->ret = *value;

    } else if (name->len == 5 && ngx_strncmp(name->data, "envid", 5) == 0
               && q->envid.data == NULL)
    {
        q->envid = *value;

    } else {
        *err = "an unknown or repeated argument";
        return NGX_DECLINED;
    }

    return NGX_OK;
}
