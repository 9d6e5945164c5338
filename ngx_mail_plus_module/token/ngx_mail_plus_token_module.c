
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_token.h"
#include "ngx_mail_plus_jwt.h"


/*
 * The "router_token_*" directives, and the requests the router's login
 * check makes of the verifier they configure (see ngx_mail_plus_token.h).
 */


static void *ngx_mail_plus_token_create_main_conf(ngx_conf_t *cf);
static char *ngx_mail_plus_token_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_mail_plus_token_jwks(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_mail_plus_token_jwt_init(ngx_conf_t *cf,
    ngx_mail_plus_token_conf_t *tcf);
static char *ngx_mail_plus_token_openid(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_mail_plus_token_destroy(ngx_mail_plus_token_req_t *req);


static ngx_command_t  ngx_mail_plus_token_commands[] = {

    { ngx_string("router_token_jwks"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_mail_plus_token_jwks,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_token_issuer"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_token_conf_t, issuer),
      NULL },

    { ngx_string("router_token_audience"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_array_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_token_conf_t, audiences),
      NULL },

    { ngx_string("router_token_login_claim"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_token_conf_t, claim),
      NULL },

    { ngx_string("router_token_clock_skew"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_token_conf_t, skew),
      NULL },

    { ngx_string("router_token_max_size"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_token_conf_t, max_size),
      NULL },

    { ngx_string("router_token_openid_configuration"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_mail_plus_token_openid,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_token_introspect"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_1MORE,
      ngx_mail_plus_token_introspect_conf,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_token_dovecot"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_mail_plus_token_dovecot_conf,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_mail_module_t  ngx_mail_plus_token_module_ctx = {
    NULL,                                  /* protocol */

    ngx_mail_plus_token_create_main_conf,  /* create main configuration */
    ngx_mail_plus_token_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL                                   /* merge server configuration */
};


ngx_module_t  ngx_mail_plus_token_module = {
    NGX_MODULE_V1,
    &ngx_mail_plus_token_module_ctx,       /* module context */
    ngx_mail_plus_token_commands,          /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_mail_plus_token_create_main_conf(ngx_conf_t *cf)
{
    ngx_mail_plus_token_conf_t  *tcf;

    tcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_token_conf_t));
    if (tcf == NULL) {
        return NULL;
    }

    tcf->max_size = NGX_CONF_UNSET_SIZE;
    tcf->skew = NGX_CONF_UNSET;
    tcf->audiences = NGX_CONF_UNSET_PTR;

    return tcf;
}


static char *
ngx_mail_plus_token_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_mail_plus_token_conf_t *tcf = conf;

    ngx_mail_plus_main_conf_t  *mpcf;

    /* the router's login check finds it there */

    mpcf = ngx_mail_conf_get_module_main_conf(cf, ngx_mail_plus_module);
    mpcf->token = tcf;

    ngx_conf_init_size_value(tcf->max_size, 8192);
    ngx_conf_init_value(tcf->skew, 60);
    ngx_conf_init_ptr_value(tcf->audiences, NULL);

    if (tcf->claim.data == NULL) {
        ngx_str_set(&tcf->claim, "email");
    }

    /* RFC 7628 section 3.2.2, and XOAUTH2's "schemes" */

    if (tcf->error.data == NULL) {
        ngx_str_set(&tcf->error,
                    "{\"status\":\"invalid_token\",\"schemes\":\"bearer\"}");
    }

    if (tcf->skew > 600) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"router_token_clock_skew\" is at most 10m");
        return NGX_CONF_ERROR;
    }

    if (tcf->verifier == NGX_MAIL_PLUS_TOKEN_JWT) {
        return ngx_mail_plus_token_jwt_init(cf, tcf);
    }

    if (tcf->verifier == NGX_MAIL_PLUS_TOKEN_INTROSPECT) {
        return ngx_mail_plus_token_introspect_init(cf, tcf);
    }

    if (tcf->verifier == NGX_MAIL_PLUS_TOKEN_DOVECOT) {
        return ngx_mail_plus_token_dovecot_init(cf, tcf);
    }

    return NGX_CONF_OK;
}


static char *
ngx_mail_plus_token_jwks(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_token_conf_t *tcf = conf;

    ngx_str_t  *value;

    if (tcf->verifier != NGX_MAIL_PLUS_TOKEN_NONE) {
        return "is duplicate, or another token verifier is configured";
    }

    value = cf->args->elts;

    tcf->verifier = NGX_MAIL_PLUS_TOKEN_JWT;
    tcf->jwks_file = value[1];

    if (ngx_conf_full_name(cf->cycle, &tcf->jwks_file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (tcf->file == NULL) {
        tcf->file = cf->conf_file->file.name.data;
        tcf->line = cf->conf_file->line;
    }

    return ngx_mail_plus_jwks_load(cf, &tcf->jwks_file, &tcf->jwks);
}


/* a token for any issuer or audience must not log in */

static char *
ngx_mail_plus_token_jwt_init(ngx_conf_t *cf, ngx_mail_plus_token_conf_t *tcf)
{
    ngx_str_t   *aud;
    ngx_uint_t   i;

    if (tcf->issuer.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"router_token_jwks\" in %s:%ui needs "
                      "\"router_token_issuer\"", tcf->file, tcf->line);
        return NGX_CONF_ERROR;
    }

    if (tcf->audiences == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"router_token_jwks\" in %s:%ui needs "
                      "\"router_token_audience\"", tcf->file, tcf->line);
        return NGX_CONF_ERROR;
    }

    aud = tcf->audiences->elts;

    for (i = 0; i < tcf->audiences->nelts; i++) {
        if (aud[i].len == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"router_token_audience\" is empty");
            return NGX_CONF_ERROR;
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, cf->log, 0,
                   "router: token jwt: issuer \"%V\", %ui audiences, "
                   "login claim \"%V\"", &tcf->issuer,
                   tcf->audiences->nelts, &tcf->claim);

    return NGX_CONF_OK;
}


/*
 * "router_token_openid_configuration URL": the discovery document a
 * client is sent to with a refusal, in the JSON status of RFC 7628
 * section 3.2.2, built here once; the URL needs no JSON escape
 */

static char *
ngx_mail_plus_token_openid(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_token_conf_t *tcf = conf;

    u_char     *p;
    size_t      i;
    ngx_str_t  *value, *url;

    if (tcf->error.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    url = &value[1];

    if (ngx_strncmp(url->data, "https://", 8) != 0
        && ngx_strncmp(url->data, "http://", 7) != 0)
    {
        return "needs an http:// or https:// URL";
    }

    for (i = 0; i < url->len; i++) {
        if (url->data[i] <= 0x20 || url->data[i] >= 0x7f
            || url->data[i] == '"' || url->data[i] == '\\')
        {
            return "has a URL with a space, a control character, a quote, "
                   "a backslash or a byte past ASCII";
        }
    }

    tcf->error.len = sizeof("{\"status\":\"invalid_token\",\"schemes\":"
                            "\"bearer\",\"openid-configuration\":\"\"}") - 1
                     + url->len;

    tcf->error.data = ngx_pnalloc(cf->pool, tcf->error.len);
    if (tcf->error.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(tcf->error.data,
                   "{\"status\":\"invalid_token\",\"schemes\":\"bearer\","
                   "\"openid-configuration\":\"",
                   sizeof("{\"status\":\"invalid_token\",\"schemes\":"
                          "\"bearer\",\"openid-configuration\":\"") - 1);
    p = ngx_cpymem(p, url->data, url->len);
    *p++ = '"';
    *p = '}';

    return NGX_CONF_OK;
}


ngx_uint_t
ngx_mail_plus_token_enabled(ngx_mail_plus_main_conf_t *mpcf)
{
    return mpcf->token && mpcf->token->verifier != NGX_MAIL_PLUS_TOKEN_NONE;
}


ngx_mail_plus_token_req_t *
ngx_mail_plus_token_create(ngx_mail_plus_main_conf_t *mpcf, ngx_log_t *log)
{
    ngx_pool_t                 *pool;
    ngx_mail_plus_token_req_t  *req;

    pool = ngx_mail_plus_own_pool(log, sizeof(ngx_mail_plus_token_req_t),
                                  (void **) &req);
    if (pool == NULL) {
        return NULL;
    }

    req->log = pool->log;
    req->pool = pool;
    req->conf = mpcf->token;
    req->result = NGX_MAIL_PLUS_TOKEN_TEMPFAIL;

    return req;
}


ngx_int_t
ngx_mail_plus_token_set(ngx_mail_plus_token_req_t *req, ngx_str_t *token,
    ngx_str_t *user, ngx_uint_t mech, ngx_uint_t protocol, ngx_str_t *client)
{
    req->token.data = ngx_pnalloc(req->pool, token->len + 1);
    if (req->token.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(req->token.data, token->data, token->len);
    req->token.data[token->len] = '\0';
    req->token.len = token->len;

    if (user && user->len) {
        req->user.data = ngx_pstrdup(req->pool, user);
        if (req->user.data == NULL) {
            return NGX_ERROR;
        }

        req->user.len = user->len;
    }

    if (client && client->len) {
        req->client.data = ngx_pstrdup(req->pool, client);
        if (req->client.data == NULL) {
            return NGX_ERROR;
        }

        req->client.len = client->len;
    }

    req->mech = mech;
    req->protocol = protocol;

    return NGX_OK;
}


ngx_int_t
ngx_mail_plus_token_verify(ngx_mail_plus_token_req_t *req)
{
    ngx_int_t  rc;

    if (req->token.len == 0 || req->token.len > req->conf->max_size) {
        req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
        req->error = req->token.len ? "the token is too long" : "no token";
        return NGX_OK;
    }

    switch (req->conf->verifier) {

    case NGX_MAIL_PLUS_TOKEN_JWT:
        rc = ngx_mail_plus_jwt_verify(req);
        break;

    case NGX_MAIL_PLUS_TOKEN_INTROSPECT:
        rc = ngx_mail_plus_token_introspect(req);
        break;

    case NGX_MAIL_PLUS_TOKEN_DOVECOT:
        rc = ngx_mail_plus_token_dovecot(req);
        break;

    default:
        req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
        req->error = "no token verifier is configured";
        return NGX_OK;
    }

    if (rc == NGX_AGAIN) {
        req->pending = 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token request %p: %i", req, rc);

    return rc;
}


void
ngx_mail_plus_token_done(ngx_mail_plus_token_req_t *req)
{
    req->pending = 0;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token request %p answered %ui%s", req,
                   req->result, req->cancelled ? ", its caller is gone" : "");

    if (req->cancelled) {
        ngx_mail_plus_token_destroy(req);
        return;
    }

    req->handler(req);
}


void
ngx_mail_plus_token_free(ngx_mail_plus_token_req_t *req)
{
    if (req->pending) {
        req->cancelled = 1;
        return;
    }

    ngx_mail_plus_token_destroy(req);
}


static void
ngx_mail_plus_token_destroy(ngx_mail_plus_token_req_t *req)
{
    /* the token is wiped before its memory goes back */

    if (req->token.data) {
        ngx_explicit_memzero(req->token.data, req->token.len);
    }

    ngx_destroy_pool(req->pool);
}
