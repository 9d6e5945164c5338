
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include "ngx_mail_plus_proxy.h"
#include "ngx_mail_plus_token.h"


/*
 * Token logins in the module's POP3 and IMAP sessions ("router_token_auth"):
 * the mechanisms in the capabilities, and RFC 7628's error exchange.
 *
 * The capabilities are the stock ones ("imap_capabilities",
 * "pop3_capabilities", "imap_auth", "pop3_auth") with the token mechanisms
 * added, built once per server when the configuration is read: IMAP's
 * AUTH=OAUTHBEARER and AUTH=XOAUTH2, with SASL-IR (an initial response is
 * taken), POP3's SASL line and the list AUTH gives.  They are not offered
 * before STARTTLS where "starttls only" hides the other mechanisms too.
 *
 * A refused token is answered as RFC 7628 (section 3.2.3) asks: a
 * challenge carrying the JSON status, whatever the client answers to it,
 * then the protocol's failure.  XOAUTH2 clients take the same exchange.
 */


static ngx_int_t ngx_mail_plus_proxy_token_imap(ngx_conf_t *cf,
    ngx_str_t *dst, ngx_str_t *src, ngx_str_t *add);
static ngx_int_t ngx_mail_plus_proxy_token_pop3(ngx_conf_t *cf,
    ngx_str_t *dst, ngx_str_t *src, ngx_str_t *mechs);
static ngx_int_t ngx_mail_plus_proxy_token_add(ngx_conf_t *cf,
    ngx_str_t *dst, ngx_str_t *src, size_t at, ngx_str_t *add);


char *
ngx_mail_plus_proxy_token_conf(ngx_conf_t *cf, ngx_mail_plus_proxy_conf_t *conf)
{
    u_char                    *p;
    ngx_str_t                  add, mechs;
    ngx_mail_plus_srv_conf_t  *pscf;
    ngx_mail_imap_srv_conf_t  *iscf;
    ngx_mail_pop3_srv_conf_t  *popcf;

    pscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_plus_module);

    conf->token_mechs = pscf->token_mechs;

    if (conf->token_mechs == 0) {
        return NGX_CONF_OK;
    }

    iscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_imap_module);
    popcf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_pop3_module);

    /* IMAP: " AUTH=OAUTHBEARER AUTH=XOAUTH2 SASL-IR" at the line's end */

    p = ngx_pnalloc(cf->pool, sizeof(" AUTH=OAUTHBEARER AUTH=XOAUTH2 SASL-IR"));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    add.data = p;

    if (conf->token_mechs & NGX_MAIL_PLUS_SASL_OAUTHBEARER) {
        p = ngx_cpymem(p, " AUTH=OAUTHBEARER", sizeof(" AUTH=OAUTHBEARER") - 1);
    }

    if (conf->token_mechs & NGX_MAIL_PLUS_SASL_XOAUTH2) {
        p = ngx_cpymem(p, " AUTH=XOAUTH2", sizeof(" AUTH=XOAUTH2") - 1);
    }

    if (ngx_strlcasestrn(iscf->capability.data,
                         iscf->capability.data + iscf->capability.len,
                         (u_char *) "SASL-IR", sizeof("SASL-IR") - 2)
        == NULL)
    {
        p = ngx_cpymem(p, " SASL-IR", sizeof(" SASL-IR") - 1);
    }

    add.len = p - add.data;

    if (ngx_mail_plus_proxy_token_imap(cf, &conf->imap_capability,
                                       &iscf->capability, &add)
        != NGX_OK
        || ngx_mail_plus_proxy_token_imap(cf, &conf->imap_starttls_capability,
                                          &iscf->starttls_capability, &add)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* POP3: " OAUTHBEARER XOAUTH2" */

    p = ngx_pnalloc(cf->pool, sizeof(" OAUTHBEARER XOAUTH2"));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    mechs.data = p;

    if (conf->token_mechs & NGX_MAIL_PLUS_SASL_OAUTHBEARER) {
        p = ngx_cpymem(p, " OAUTHBEARER", sizeof(" OAUTHBEARER") - 1);
    }

    if (conf->token_mechs & NGX_MAIL_PLUS_SASL_XOAUTH2) {
        p = ngx_cpymem(p, " XOAUTH2", sizeof(" XOAUTH2") - 1);
    }

    mechs.len = p - mechs.data;

    if (ngx_mail_plus_proxy_token_pop3(cf, &conf->pop3_capability,
                                       &popcf->capability, &mechs)
        != NGX_OK
        || ngx_mail_plus_proxy_token_pop3(cf, &conf->pop3_starttls_capability,
                                          &popcf->starttls_capability, &mechs)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* AUTH without arguments: one mechanism a line, before "." */

    p = ngx_pnalloc(cf->pool, sizeof("OAUTHBEARER" CRLF "XOAUTH2" CRLF));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    add.data = p;

    if (conf->token_mechs & NGX_MAIL_PLUS_SASL_OAUTHBEARER) {
        p = ngx_cpymem(p, "OAUTHBEARER" CRLF, sizeof("OAUTHBEARER" CRLF) - 1);
    }

    if (conf->token_mechs & NGX_MAIL_PLUS_SASL_XOAUTH2) {
        p = ngx_cpymem(p, "XOAUTH2" CRLF, sizeof("XOAUTH2" CRLF) - 1);
    }

    add.len = p - add.data;

    if (popcf->auth_capability.len < 3) {
        conf->pop3_auth_capability = popcf->auth_capability;
        return NGX_CONF_OK;
    }

    if (ngx_mail_plus_proxy_token_add(cf, &conf->pop3_auth_capability,
                                      &popcf->auth_capability,
                                      popcf->auth_capability.len - 3, &add)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "* CAPABILITY ..." CRLF: the mechanisms before the CRLF */

static ngx_int_t
ngx_mail_plus_proxy_token_imap(ngx_conf_t *cf, ngx_str_t *dst,
    ngx_str_t *src, ngx_str_t *add)
{
    if (src->len < 2) {
        *dst = *src;
        return NGX_OK;
    }

    return ngx_mail_plus_proxy_token_add(cf, dst, src, src->len - 2, add);
}


/*
 * "+OK ..." CRLF lines "." CRLF: the mechanisms at the end of the SASL
 * line, or a SASL line of their own before the "."
 */

static ngx_int_t
ngx_mail_plus_proxy_token_pop3(ngx_conf_t *cf, ngx_str_t *dst,
    ngx_str_t *src, ngx_str_t *mechs)
{
    u_char     *p, *last, *cr;
    ngx_str_t   line;

    if (src->len < 3) {
        *dst = *src;
        return NGX_OK;
    }

    last = src->data + src->len;

    p = ngx_strlcasestrn(src->data, last, (u_char *) CRLF "SASL ",
                         sizeof(CRLF "SASL ") - 2);

    if (p) {
        cr = ngx_strlchr(p + 2, last, CR);
        if (cr == NULL) {
            *dst = *src;
            return NGX_OK;
        }

        return ngx_mail_plus_proxy_token_add(cf, dst, src, cr - src->data,
                                             mechs);
    }

    line.len = sizeof("SASL") - 1 + mechs->len + 2;
    line.data = ngx_pnalloc(cf->pool, line.len);
    if (line.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(line.data, "SASL", 4);
    p = ngx_cpymem(p, mechs->data, mechs->len);
    *p++ = CR; *p = LF;

    return ngx_mail_plus_proxy_token_add(cf, dst, src, src->len - 3, &line);
}


static ngx_int_t
ngx_mail_plus_proxy_token_add(ngx_conf_t *cf, ngx_str_t *dst, ngx_str_t *src,
    size_t at, ngx_str_t *add)
{
    u_char  *p;

    dst->len = src->len + add->len;
    dst->data = ngx_pnalloc(cf->pool, dst->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(dst->data, src->data, at);
    p = ngx_cpymem(p, add->data, add->len);
    ngx_memcpy(p, src->data + at, src->len - at);

    return NGX_OK;
}


/* the capability of the session: the stock one, or ours with the tokens */

ngx_str_t *
ngx_mail_plus_proxy_token_capability(ngx_mail_session_t *s,
    ngx_str_t *capability)
{
    ngx_mail_imap_srv_conf_t   *iscf;
    ngx_mail_pop3_srv_conf_t   *pscf;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    if (ctx->conf->token_mechs == 0) {
        return capability;
    }

    if (ctx->protocol == NGX_MAIL_PLUS_IMAP) {
        iscf = ngx_mail_get_module_srv_conf(s, ngx_mail_imap_module);

        if (capability == &iscf->capability) {
            return &ctx->conf->imap_capability;
        }

        if (capability == &iscf->starttls_capability) {
            return &ctx->conf->imap_starttls_capability;
        }

        return capability;
    }

    pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_module);

    if (capability == &pscf->capability) {
        return &ctx->conf->pop3_capability;
    }

    if (capability == &pscf->starttls_capability) {
        return &ctx->conf->pop3_starttls_capability;
    }

    if (capability == &pscf->auth_capability) {
        return &ctx->conf->pop3_auth_capability;
    }

    return capability;
}


/* the mechanism asked, if it is a token's one and offered here: 0 if not */

ngx_uint_t
ngx_mail_plus_proxy_token_mech(ngx_mail_session_t *s, ngx_str_t *mech)
{
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    if (mech->len == 11
        && ngx_strncasecmp(mech->data, (u_char *) "OAUTHBEARER", 11) == 0)
    {
        return ctx->conf->token_mechs & NGX_MAIL_PLUS_SASL_OAUTHBEARER;
    }

    if (mech->len == 7
        && ngx_strncasecmp(mech->data, (u_char *) "XOAUTH2", 7) == 0)
    {
        return ctx->conf->token_mechs & NGX_MAIL_PLUS_SASL_XOAUTH2;
    }

    return 0;
}


/*
 * a refused token, after the router's delay: the challenge with RFC
 * 7628's JSON status; the client's answer to it gets the failure
 */

void
ngx_mail_plus_proxy_token_refused(ngx_mail_session_t *s)
{
    u_char                     *p;
    ngx_str_t                   text, *json, b64;
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    json = &mpcf->token->error;

    text.len = 2 + ngx_base64_encoded_length(json->len);
    text.data = ngx_pnalloc(s->connection->pool, text.len);
    if (text.data == NULL) {
        ngx_mail_close_connection(s->connection);
        return;
    }

    p = ngx_cpymem(text.data, "+ ", 2);

    b64.data = p;
    ngx_encode_base64(&b64, json);

    text.len = 2 + b64.len;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: token refused, the error challenge is sent");

    ngx_mail_plus_proxy_resume(s, &text, 0, NGX_MAIL_PLUS_STATE_TOKEN_ERROR);
}
