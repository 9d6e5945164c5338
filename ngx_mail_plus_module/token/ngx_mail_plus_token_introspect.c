
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include <jansson.h>
#include <openssl/evp.h>
#include "ngx_mail_plus_token_introspect.h"


/*
 * "router_token_introspect": a token is checked by the identity
 * provider's introspection endpoint (RFC 7662).  A request looks in the
 * zone's cache first (by the token's SHA-256), then is sent on one of the
 * worker's connections to the endpoint or waits for one
 * (ngx_mail_plus_token_introspect_http.c).  The endpoint's answer, a JSON
 * object, is read here: "active" false refuses the token; "active" true
 * names the login by the configured claim ("username" if it is absent),
 * and "exp", "nbf", "aud" and "iss" are checked as a JWT's are.  Any other
 * answer, or none, is a temporary failure, and the endpoint's state
 * (reachable or not) is logged when it changes.
 */


static ngx_int_t ngx_mail_plus_introspect_url(ngx_conf_t *cf,
    ngx_mail_plus_introspect_t *ip, ngx_str_t *url);
static ngx_int_t ngx_mail_plus_introspect_param(ngx_conf_t *cf,
    ngx_mail_plus_introspect_t *ip, ngx_str_t *value, ngx_str_t *client_id,
    ngx_str_t *secret_file);
static ngx_int_t ngx_mail_plus_introspect_secret(ngx_conf_t *cf,
    ngx_mail_plus_introspect_t *ip, ngx_str_t *client_id, ngx_str_t *file);
static ngx_int_t ngx_mail_plus_introspect_ssl(ngx_conf_t *cf,
    ngx_mail_plus_introspect_t *ip);
static void ngx_mail_plus_introspect_answer(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req, json_t *json);
static ngx_uint_t ngx_mail_plus_introspect_claims(
    ngx_mail_plus_introspect_t *ip, ngx_mail_plus_token_req_t *req,
    json_t *json);
static ngx_int_t ngx_mail_plus_introspect_login(ngx_mail_plus_token_req_t *req,
    json_t *json);
static ngx_uint_t ngx_mail_plus_introspect_audience(ngx_array_t *audiences,
    json_t *aud);
static void ngx_mail_plus_introspect_user(ngx_mail_plus_token_req_t *req);
static void ngx_mail_plus_introspect_state(ngx_mail_plus_introspect_t *ip,
    ngx_uint_t up, const char *reason);


char *
ngx_mail_plus_token_introspect_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_plus_token_conf_t *tcf = conf;

    ngx_str_t                   *value, client_id, secret_file;
    ngx_uint_t                   i;
    ngx_mail_plus_introspect_t  *ip;

    if (tcf->verifier != NGX_MAIL_PLUS_TOKEN_NONE) {
        return "is duplicate, or another token verifier is configured";
    }

    ip = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_introspect_t));
    if (ip == NULL) {
        return NGX_CONF_ERROR;
    }

    ip->timeout = 5000;
    ip->connections = 4;
    ip->cache = 300;
    ip->verify = 1;
    ip->tcf = tcf;
    ip->mpcf = ngx_mail_conf_get_module_main_conf(cf, ngx_mail_plus_module);

    value = cf->args->elts;

    if (ngx_mail_plus_introspect_url(cf, ip, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&client_id);
    ngx_str_null(&secret_file);

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_mail_plus_introspect_param(cf, ip, &value[i], &client_id,
                                           &secret_file)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if ((client_id.len == 0) != (secret_file.len == 0)) {
        return "needs both \"client_id=\" and \"client_secret_file=\", "
               "or neither";
    }

    if (client_id.len
        && ngx_mail_plus_introspect_secret(cf, ip, &client_id, &secret_file)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ip->https && ngx_mail_plus_introspect_ssl(cf, ip) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ip->conns = ngx_pcalloc(cf->pool, ip->connections
                                  * sizeof(ngx_mail_plus_introspect_conn_t));
    if (ip->conns == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < ip->connections; i++) {
        ip->conns[i].ip = ip;
        ip->conns[i].slot = i;
    }

    ngx_queue_init(&ip->waiting);

    tcf->verifier = NGX_MAIL_PLUS_TOKEN_INTROSPECT;
    tcf->introspect = ip;
    tcf->file = cf->conf_file->file.name.data;
    tcf->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/* http:// or https://, a host resolved now, a port, a path */

static ngx_int_t
ngx_mail_plus_introspect_url(ngx_conf_t *cf, ngx_mail_plus_introspect_t *ip,
    ngx_str_t *url)
{
    u_char     *p;
    size_t      skip;
    ngx_url_t   u;

    ip->url = *url;

    if (url->len > 8 && ngx_strncasecmp(url->data, (u_char *) "https://", 8)
                        == 0)
    {
        ip->https = 1;
        skip = 8;

    } else if (url->len > 7
               && ngx_strncasecmp(url->data, (u_char *) "http://", 7) == 0)
    {
        skip = 7;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URL \"%V\": http:// or https:// expected",
                           url);
        return NGX_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = url->data + skip;
    u.url.len = url->len - skip;
    u.default_port = ip->https ? 443 : 80;
    u.uri_part = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in URL \"%V\"",
                           u.err ? u.err : "invalid host", url);
        return NGX_ERROR;
    }

    if (u.naddrs == 0 || u.family == AF_UNIX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no address for the host of URL \"%V\"", url);
        return NGX_ERROR;
    }

    if (u.uri.len == 0 || u.uri.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "URL \"%V\" has no path", url);
        return NGX_ERROR;
    }

    for (p = url->data; p < url->data + url->len; p++) {
        if (*p <= 0x20 || *p == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid character in URL \"%V\"", url);
            return NGX_ERROR;
        }
    }

    ip->addr = &u.addrs[0];
    ip->uri = u.uri;

    /* Host: as written, with the port if one was given */

    ip->host.len = u.host.len + (u.no_port ? 0 : 1 + NGX_INT_T_LEN);
    ip->host.data = ngx_pnalloc(cf->pool, ip->host.len);
    if (ip->host.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ip->host.data, u.host.data, u.host.len);

    if (!u.no_port) {
        p = ngx_sprintf(p, ":%d", (int) u.port);
    }

    ip->host.len = p - ip->host.data;

    /* the TLS name: no brackets, NUL-terminated for SNI */

    ip->name = u.host;

    if (ip->name.len > 2 && ip->name.data[0] == '[') {
        ip->name.data++;
        ip->name.len -= 2;
    }

    p = ngx_pnalloc(cf->pool, ip->name.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, ip->name.data, ip->name.len);
    p[ip->name.len] = '\0';
    ip->name.data = p;

    ip->ip_name = ngx_strlchr(ip->name.data, ip->name.data + ip->name.len,
                              ':') != NULL
                  || ngx_inet_addr(ip->name.data, ip->name.len)
                     != INADDR_NONE;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_introspect_param(ngx_conf_t *cf, ngx_mail_plus_introspect_t *ip,
    ngx_str_t *value, ngx_str_t *client_id, ngx_str_t *secret_file)
{
    ngx_int_t  n;
    ngx_str_t  s;

    if (ngx_strncmp(value->data, "client_id=", 10) == 0) {
        s.data = value->data + 10;
        s.len = value->len - 10;

        if (s.len == 0 || s.len > 255 || ngx_mail_plus_text_has_ctl(&s)) {
            goto invalid;
        }

        *client_id = s;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "client_secret_file=", 19) == 0) {
        s.data = value->data + 19;
        s.len = value->len - 19;

        if (s.len == 0) {
            goto invalid;
        }

        *secret_file = s;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "timeout=", 8) == 0) {
        s.data = value->data + 8;
        s.len = value->len - 8;

        n = ngx_parse_time(&s, 0);
        if (n == NGX_ERROR || n == 0) {
            goto invalid;
        }

        ip->timeout = (ngx_msec_t) n;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "connections=", 12) == 0) {
        n = ngx_atoi(value->data + 12, value->len - 12);
        if (n == NGX_ERROR || n == 0 || n > 1024) {
            goto invalid;
        }

        ip->connections = (ngx_uint_t) n;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "cache=", 6) == 0) {
        s.data = value->data + 6;
        s.len = value->len - 6;

        n = ngx_parse_time(&s, 1);
        if (n == NGX_ERROR) {
            goto invalid;
        }

        ip->cache = (time_t) n;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "trusted_certificate=", 20) == 0) {
        ip->trusted.data = value->data + 20;
        ip->trusted.len = value->len - 20;

        if (ip->trusted.len == 0) {
            goto invalid;
        }

        return NGX_OK;
    }

    if (ngx_strcmp(value->data, "verify=on") == 0) {
        ip->verify = 1;
        return NGX_OK;
    }

    if (ngx_strcmp(value->data, "verify=off") == 0) {
        ip->verify = 0;
        return NGX_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                       value);

    return NGX_ERROR;
}


/*
 * The client secret, from a file (nginx.conf never holds it): HTTP Basic
 * of the client_id and the secret, each form-urlencoded first (RFC 6749
 * 2.3.1).  What held the secret in the clear is wiped.
 */

static ngx_int_t
ngx_mail_plus_introspect_secret(ngx_conf_t *cf, ngx_mail_plus_introspect_t *ip,
    ngx_str_t *client_id, ngx_str_t *file)
{
    u_char           *p, buf[1024];
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_int_t         rc;
    ngx_str_t         secret, id, enc, cred;
    ngx_file_t        f;

    if (ngx_conf_full_name(cf->cycle, file, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", file);
        return NGX_ERROR;
    }

    ngx_memzero(&f, sizeof(ngx_file_t));
    f.fd = fd;
    f.name = *file;
    f.log = cf->log;

    n = ngx_read_file(&f, buf, sizeof(buf), 0);

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", file);
    }

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* one line: what ends it goes */

    p = buf + n;

    while (p > buf && (p[-1] == LF || p[-1] == CR || p[-1] == ' '
                       || p[-1] == '\t'))
    {
        p--;
    }

    secret.data = buf;
    secret.len = p - buf;

    rc = NGX_ERROR;
    enc.data = NULL;
    enc.len = 0;

    if (n == (ssize_t) sizeof(buf) || secret.len == 0
        || ngx_mail_plus_text_has_ctl(&secret))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the client secret in \"%V\" must be one line "
                           "of 1 to 1000 bytes", file);
        goto done;
    }

    if (ngx_mail_plus_introspect_urlencode(cf->pool, client_id, &id)
        != NGX_OK
        || ngx_mail_plus_introspect_urlencode(cf->pool, &secret, &enc)
           != NGX_OK)
    {
        goto done;
    }

    cred.len = id.len + 1 + enc.len;
    cred.data = ngx_pnalloc(cf->pool, cred.len);
    if (cred.data == NULL) {
        goto done;
    }

    p = ngx_cpymem(cred.data, id.data, id.len);
    *p++ = ':';
    ngx_memcpy(p, enc.data, enc.len);

    ip->authorization.len = sizeof("Basic ") - 1
                            + ngx_base64_encoded_length(cred.len);
    ip->authorization.data = ngx_pnalloc(cf->pool, ip->authorization.len);
    if (ip->authorization.data == NULL) {
        ngx_explicit_memzero(cred.data, cred.len);
        goto done;
    }

    p = ngx_cpymem(ip->authorization.data, "Basic ", sizeof("Basic ") - 1);

    id.data = p;
    ngx_encode_base64(&id, &cred);
    ip->authorization.len = sizeof("Basic ") - 1 + id.len;

    ngx_explicit_memzero(cred.data, cred.len);

    rc = NGX_OK;

done:

    if (enc.data) {
        ngx_explicit_memzero(enc.data, enc.len);
    }

    ngx_explicit_memzero(buf, sizeof(buf));

    return rc;
}


static ngx_int_t
ngx_mail_plus_introspect_ssl(ngx_conf_t *cf, ngx_mail_plus_introspect_t *ip)
{
#if (NGX_SSL)
    ngx_pool_cleanup_t  *cln;

    ip->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ip->ssl == NULL) {
        return NGX_ERROR;
    }

    ip->ssl->log = cf->log;

    if (ngx_ssl_create(ip->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ip->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ip->ssl;

    if (!ip->verify) {
        return NGX_OK;
    }

    if (ip->trusted.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"verify=on\" needs \"trusted_certificate=\" "
                           "with an https URL");
        return NGX_ERROR;
    }

    if (ngx_ssl_trusted_certificate(cf, ip->ssl, &ip->trusted, 10) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "https URLs need nginx built with OpenSSL");
    return NGX_ERROR;

#endif
}


/* at the end of the "mail" block: the answers are cached in the zone */

char *
ngx_mail_plus_token_introspect_init(ngx_conf_t *cf,
    ngx_mail_plus_token_conf_t *tcf)
{
    ngx_mail_plus_introspect_t  *ip;

    ip = tcf->introspect;

    if (ip->mpcf->shm_zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"router_token_introspect\" needs \"router_zone\": "
                      "the endpoint's answers are cached there, in %s:%ui",
                      tcf->file, tcf->line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * the router asks: the cache answers now (NGX_OK), else the endpoint
 * later (NGX_AGAIN), or now with TEMPFAIL when it cannot be asked
 */

ngx_int_t
ngx_mail_plus_token_introspect(ngx_mail_plus_token_req_t *req)
{
    time_t                           exp;
    ngx_uint_t                       result;
    ngx_mail_plus_introspect_t      *ip;
    ngx_mail_plus_introspect_ctx_t  *ctx;

    ip = req->conf->introspect;

    ctx = ngx_pcalloc(req->pool, sizeof(ngx_mail_plus_introspect_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->req = req;
    req->ctx = ctx;

    if (EVP_Digest(req->token.data, req->token.len, ctx->hash, NULL,
                   EVP_sha256(), NULL)
        != 1)
    {
        return NGX_ERROR;
    }

    if (ngx_mail_plus_introspect_cache_get(ip, ctx->hash, &result,
                                           &req->login, &exp, req->pool)
        == NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token introspection cache hit: %ui", result);

        req->result = result;

        if (result == NGX_MAIL_PLUS_TOKEN_VALID) {
            req->expires = exp;
            ngx_mail_plus_introspect_user(req);

        } else {
            req->error = "the token is not active (cached)";
        }

        return NGX_OK;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token introspection cache miss");

    return ngx_mail_plus_introspect_send(ip, req);
}


/* the endpoint answered 200: its body, read whole */

void
ngx_mail_plus_introspect_response(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req, u_char *body, size_t len)
{
    json_t        *json;
    json_error_t   err;

    json = json_loadb((const char *) body, len, JSON_REJECT_DUPLICATES,
                      &err);

    if (json == NULL || !json_is_object(json)) {
        if (json) {
            json_decref(json);
        }

        ngx_mail_plus_introspect_fail(ip, req,
                                      "the endpoint's answer is not a JSON "
                                      "object");
        return;
    }

    if (!json_is_boolean(json_object_get(json, "active"))) {
        json_decref(json);
        ngx_mail_plus_introspect_fail(ip, req,
                                      "the endpoint's answer has no "
                                      "\"active\"");
        return;
    }

    ngx_mail_plus_introspect_state(ip, 1, NULL);

    ngx_mail_plus_introspect_answer(ip, req, json);

    json_decref(json);

    ngx_mail_plus_token_done(req);
}


static void
ngx_mail_plus_introspect_answer(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req, json_t *json)
{
    time_t                           expires, now;
    ngx_mail_plus_introspect_ctx_t  *ctx;

    ctx = req->ctx;
    now = ngx_time();

    if (json_is_false(json_object_get(json, "active"))) {
        req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
        req->error = "the token is not active";

    } else {
        req->result = ngx_mail_plus_introspect_claims(ip, req, json);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token introspection answered %ui, expires %T",
                   req->result, req->expires);

    if (req->result == NGX_MAIL_PLUS_TOKEN_VALID) {
        expires = now + ip->cache;

        if (req->expires && req->expires + req->conf->skew < expires) {
            expires = req->expires + req->conf->skew;
        }

        if (ip->cache) {
            ngx_mail_plus_introspect_cache_put(ip, ctx->hash, req->result,
                                               &req->login, expires);
        }

        ngx_mail_plus_introspect_user(req);

    } else if (ip->mpcf->dir_invalid) {
        ngx_mail_plus_introspect_cache_put(ip, ctx->hash, req->result, NULL,
                                           now + ip->mpcf->dir_invalid);
    }
}


/* an active token: its claims, as a JWT's are checked */

static ngx_uint_t
ngx_mail_plus_introspect_claims(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req, json_t *json)
{
    time_t                       now;
    json_t                      *v;
    ngx_mail_plus_token_conf_t  *tcf;

    tcf = req->conf;
    now = ngx_time();

    v = json_object_get(json, "exp");

    if (v) {
        if (!json_is_number(v)) {
            req->error = "the token's \"exp\" is not a number";
            return NGX_MAIL_PLUS_TOKEN_INVALID;
        }

        req->expires = (time_t) json_number_value(v);

        if (req->expires + tcf->skew <= now) {
            req->error = "the token has expired";
            return NGX_MAIL_PLUS_TOKEN_INVALID;
        }
    }

    v = json_object_get(json, "nbf");

    if (v && (!json_is_number(v)
              || (time_t) json_number_value(v) - tcf->skew > now))
    {
        req->error = "the token is not valid yet";
        return NGX_MAIL_PLUS_TOKEN_INVALID;
    }

    if (tcf->issuer.len) {
        v = json_object_get(json, "iss");

        if (!json_is_string(v)
            || json_string_length(v) != tcf->issuer.len
            || ngx_memcmp(json_string_value(v), tcf->issuer.data,
                          tcf->issuer.len)
               != 0)
        {
            req->error = "the token's issuer is not the one configured";
            return NGX_MAIL_PLUS_TOKEN_INVALID;
        }
    }

    if (tcf->audiences
        && !ngx_mail_plus_introspect_audience(tcf->audiences,
                                              json_object_get(json, "aud")))
    {
        req->error = "the token is not for an audience configured";
        return NGX_MAIL_PLUS_TOKEN_INVALID;
    }

    if (ngx_mail_plus_introspect_login(req, json) != NGX_OK) {
        return NGX_MAIL_PLUS_TOKEN_INVALID;
    }

    return NGX_MAIL_PLUS_TOKEN_VALID;
}


/* the configured claim, else "username": a login as the router takes one */

static ngx_int_t
ngx_mail_plus_introspect_login(ngx_mail_plus_token_req_t *req, json_t *json)
{
    u_char      *p, *last;
    size_t       len;
    json_t      *v;
    const char  *s;

    v = json_object_get(json, (const char *) req->conf->claim.data);

    if (v == NULL) {
        v = json_object_get(json, "username");
    }

    if (!json_is_string(v)) {
        req->error = "the token names no login";
        return NGX_ERROR;
    }

    s = json_string_value(v);
    len = json_string_length(v);

    if (len == 0 || len > 255) {
        req->error = "the token's login is empty or too long";
        return NGX_ERROR;
    }

    last = (u_char *) s + len;

    for (p = (u_char *) s; p < last; p++) {
        if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\') {
            req->error = "the token's login has a forbidden character";
            return NGX_ERROR;
        }
    }

    req->login.data = ngx_pnalloc(req->pool, len);
    if (req->login.data == NULL) {
        req->error = "out of memory";
        return NGX_ERROR;
    }

    ngx_memcpy(req->login.data, s, len);
    req->login.len = len;

    return NGX_OK;
}


static ngx_uint_t
ngx_mail_plus_introspect_audience(ngx_array_t *audiences, json_t *aud)
{
    size_t       i, n;
    json_t      *v;
    ngx_str_t   *a;
    ngx_uint_t   k;

    a = audiences->elts;
    n = json_is_array(aud) ? json_array_size(aud) : 1;

    for (i = 0; i < n; i++) {
        v = json_is_array(aud) ? json_array_get(aud, i) : aud;

        if (!json_is_string(v)) {
            continue;
        }

        for (k = 0; k < audiences->nelts; k++) {
            if (json_string_length(v) == a[k].len
                && ngx_memcmp(json_string_value(v), a[k].data, a[k].len)
                   == 0)
            {
                return 1;
            }
        }
    }

    return 0;
}


/* a valid token for the SASL user, if the client named one */

static void
ngx_mail_plus_introspect_user(ngx_mail_plus_token_req_t *req)
{
    if (req->user.len == 0) {
        return;
    }

    if (req->user.len != req->login.len
        || ngx_strncasecmp(req->user.data, req->login.data, req->login.len)
           != 0)
    {
        req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
        req->error = "the token names another user";
    }
}


/* the endpoint could not answer: TEMPFAIL now, the caller not called */

void
ngx_mail_plus_introspect_tempfail(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req, const char *reason)
{
    req->result = NGX_MAIL_PLUS_TOKEN_TEMPFAIL;
    req->error = reason;

    ngx_mail_plus_introspect_state(ip, 0, reason);
}


/* and later: the caller called */

void
ngx_mail_plus_introspect_fail(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req, const char *reason)
{
    ngx_mail_plus_introspect_tempfail(ip, req, reason);

    ngx_mail_plus_token_done(req);
}


/* the endpoint's state, logged when it changes, once for all workers */

static void
ngx_mail_plus_introspect_state(ngx_mail_plus_introspect_t *ip, ngx_uint_t up,
    const char *reason)
{
    ngx_atomic_t       *down;
    ngx_atomic_uint_t   d;

    down = ngx_mail_plus_introspect_down(ip);

    d = up ? 0 : 1;

    if (!ngx_atomic_cmp_set(down, 1 - d, d)) {
        return;
    }

    if (up) {
        ngx_log_error(NGX_LOG_NOTICE, ip->log, 0,
                      "token introspection endpoint \"%V\" is reachable "
                      "again", &ip->url);

    } else {
        ngx_log_error(NGX_LOG_ERR, ip->log, 0,
                      "token introspection endpoint \"%V\" is not "
                      "reachable: %s", &ip->url, reason);
    }
}


/* application/x-www-form-urlencoded (RFC 6749 Appendix B) */

ngx_int_t
ngx_mail_plus_introspect_urlencode(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst)
{
    u_char  *p, *s, *last, c;

    static u_char  hex[] = "0123456789ABCDEF";

    dst->data = ngx_pnalloc(pool, src->len * 3 + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    p = dst->data;
    last = src->data + src->len;

    for (s = src->data; s < last; s++) {
        c = *s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9')
            || c == '-' || c == '.' || c == '_' || c == '*')
        {
            *p++ = c;

        } else if (c == ' ') {
            *p++ = '+';

        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0x0f];
        }
    }

    dst->len = p - dst->data;

    return NGX_OK;
}
