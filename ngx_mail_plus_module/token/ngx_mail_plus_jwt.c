/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_token.h"
#include "ngx_mail_plus_jwt.h"

#include <openssl/ec.h>
#include <openssl/err.h>


/*
 * The JWT verifier: a bearer token that is a JWS (RFC 7515) in compact
 * form, signed by the identity provider with one of the keys of the JWKS
 * file, is checked here, at once (nothing is asked of anyone):
 *
 *   - three base64url parts, the strict alphabet, no padding, no bits
 *     left over (one encoding only);
 *   - the header: a JSON object, "alg" RS256, ES256 or EdDSA and the
 *     algorithm of the key named by "kid" ("none", HMAC and every other
 *     algorithm refused), no "crit";
 *   - the signature, with EVP_DigestVerify() (ES256's r || s made DER);
 *   - the claims: "exp" (required), "nbf" and "iat" against the clock
 *     with the configured skew, "iss" the configured issuer, "aud" one of
 *     the configured audiences (a string or an array), the login claim a
 *     string of 1 to 255 bytes with no control byte, space, quote or
 *     backslash, equal to the SASL user, if any, without regard to case.
 *
 * JSON is parsed by jansson from bounded input (a bounded nesting depth,
 * duplicate names refused).  A refusal's reason is one of a few fixed
 * strings: no byte of the token reaches req->error or a log line.
 */


#define NGX_MAIL_PLUS_JWT_HEADER_MAX   2048   /* decoded header, bytes */
#define NGX_MAIL_PLUS_JWT_SIG_MAX      1024   /* RSA 8192 bits */
#define NGX_MAIL_PLUS_JWT_DEPTH_MAX    16
#define NGX_MAIL_PLUS_JWT_LOGIN_MAX    255
#define NGX_MAIL_PLUS_JWT_TIME_MAX     253402300799.0   /* 9999-12-31 */


static ngx_int_t ngx_mail_plus_jwt_split(ngx_str_t *token, ngx_str_t *part);
static json_t *ngx_mail_plus_jwt_json(ngx_mail_plus_token_req_t *req,
    ngx_str_t *part, size_t max);
static ngx_int_t ngx_mail_plus_jwt_depth(u_char *p, size_t len);
static ngx_int_t ngx_mail_plus_jwt_header(ngx_mail_plus_token_req_t *req,
    json_t *header, ngx_mail_plus_jwk_t **key);
static ngx_int_t ngx_mail_plus_jwt_signature(ngx_mail_plus_token_req_t *req,
    ngx_mail_plus_jwk_t *key, ngx_str_t *input, ngx_str_t *part);
static size_t ngx_mail_plus_jwt_ecdsa_der(u_char *raw, u_char *der);
static ngx_int_t ngx_mail_plus_jwt_claims(ngx_mail_plus_token_req_t *req,
    json_t *claims);
static ngx_int_t ngx_mail_plus_jwt_time(json_t *claims, const char *name,
    time_t *t);
static ngx_int_t ngx_mail_plus_jwt_audience(ngx_mail_plus_token_conf_t *tcf,
    json_t *aud);
static ngx_int_t ngx_mail_plus_jwt_login(ngx_mail_plus_token_req_t *req,
    json_t *claims);
static ngx_int_t ngx_mail_plus_jwt_base64url_value(u_char ch);


ngx_int_t
ngx_mail_plus_jwt_verify(ngx_mail_plus_token_req_t *req)
{
    json_t               *json;
    ngx_int_t             rc;
    ngx_str_t             part[3], input;
    ngx_mail_plus_jwk_t  *key;

    req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
    req->error = "malformed";

    if (req->conf->jwks == NULL
        || ngx_mail_plus_jwt_split(&req->token, part) != NGX_OK)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token jwt: not three base64url parts");
        return NGX_OK;
    }

    /* the header */

    json = ngx_mail_plus_jwt_json(req, &part[0], NGX_MAIL_PLUS_JWT_HEADER_MAX);
    if (json == NULL) {
        return req->error ? NGX_OK : NGX_ERROR;
    }

    rc = ngx_mail_plus_jwt_header(req, json, &key);

    json_decref(json);

    if (rc != NGX_OK) {
        return NGX_OK;
    }

    /* the signature over the header and payload parts as they came */

    input.data = req->token.data;
    input.len = part[1].data + part[1].len - req->token.data;

    rc = ngx_mail_plus_jwt_signature(req, key, &input, &part[2]);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    /* the claims, once the signature says who wrote them */

    json = ngx_mail_plus_jwt_json(req, &part[1], req->conf->max_size);
    if (json == NULL) {
        return req->error ? NGX_OK : NGX_ERROR;
    }

    rc = ngx_mail_plus_jwt_claims(req, json);

    json_decref(json);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        req->result = NGX_MAIL_PLUS_TOKEN_VALID;
        req->error = NULL;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token jwt: %s%s",
                   rc == NGX_OK ? "valid" : "refused: ",
                   rc == NGX_OK ? "" : req->error);

    return NGX_OK;
}


/* the three parts: none empty but the signature's, the base64url alphabet */

static ngx_int_t
ngx_mail_plus_jwt_split(ngx_str_t *token, ngx_str_t *part)
{
    u_char      *p, *last;
    ngx_uint_t   n;

    p = token->data;
    last = token->data + token->len;

    part[0].data = p;
    n = 0;

    for ( /* void */ ; p < last; p++) {

        if (*p == '.') {
            if (n == 2) {
                return NGX_ERROR;
            }

            part[n].len = p - part[n].data;
            part[++n].data = p + 1;
            continue;
        }

        if (ngx_mail_plus_jwt_base64url_value(*p) < 0) {
            return NGX_ERROR;
        }
    }

    if (n != 2) {
        return NGX_ERROR;
    }

    part[2].len = last - part[2].data;

    if (part[0].len == 0 || part[1].len == 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A part decoded and parsed as a JSON object; NULL with req->error set
 * (refused), or without it (out of memory)
 */

static json_t *
ngx_mail_plus_jwt_json(ngx_mail_plus_token_req_t *req, ngx_str_t *part,
    size_t max)
{
    json_t        *json;
    ngx_str_t      data;
    json_error_t   jerr;

    req->error = "malformed";

    if (part->len / 4 * 3 + 2 > max) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token jwt: a part too long");
        return NULL;
    }

    data.data = ngx_pnalloc(req->pool, part->len / 4 * 3 + 2);
    if (data.data == NULL) {
        req->error = NULL;
        return NULL;
    }

    if (ngx_mail_plus_jwt_base64url(&data, part->data, part->len) != NGX_OK
        || ngx_mail_plus_jwt_depth(data.data, data.len) != NGX_OK)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token jwt: not base64url, or JSON too deep");
        return NULL;
    }

    json = json_loadb((char *) data.data, data.len, JSON_REJECT_DUPLICATES,
                      &jerr);

    if (json == NULL || !json_is_object(json)) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token jwt: not a JSON object");
        json_decref(json);
        return NULL;
    }

    return json;
}


/*
 * The nesting of arrays and objects, bounded before jansson parses it
 * (jansson's own bound is 2048 levels of recursion)
 */

static ngx_int_t
ngx_mail_plus_jwt_depth(u_char *p, size_t len)
{
    u_char      *last;
    ngx_uint_t   depth, string;

    last = p + len;
    depth = 0;
    string = 0;

    for ( /* void */ ; p < last; p++) {

        if (string) {
            if (*p == '\\') {
                p++;

            } else if (*p == '"') {
                string = 0;
            }

            continue;
        }

        switch (*p) {

        case '"':
            string = 1;
            break;

        case '{':
        case '[':
            if (++depth > NGX_MAIL_PLUS_JWT_DEPTH_MAX) {
                return NGX_ERROR;
            }

            break;

        case '}':
        case ']':
            if (depth) {
                depth--;
            }

            break;
        }
    }

    return NGX_OK;
}


/* "alg", "kid", no "crit": the key, of the type "alg" names */

static ngx_int_t
ngx_mail_plus_jwt_header(ngx_mail_plus_token_req_t *req, json_t *header,
    ngx_mail_plus_jwk_t **key)
{
    json_t                *kid;
    ngx_uint_t             type;
    const char            *alg;
    ngx_mail_plus_jwk_t   *jwk;
    ngx_mail_plus_jwks_t  *jwks;

    alg = json_string_value(json_object_get(header, "alg"));

    if (alg == NULL) {
        req->error = "malformed";
        return NGX_DECLINED;
    }

    if (ngx_strcmp(alg, "RS256") == 0) {
        type = NGX_MAIL_PLUS_JWK_RSA;

    } else if (ngx_strcmp(alg, "ES256") == 0) {
        type = NGX_MAIL_PLUS_JWK_P256;

    } else if (ngx_strcmp(alg, "EdDSA") == 0) {
        type = NGX_MAIL_PLUS_JWK_ED25519;

    } else {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token jwt: algorithm not allowed");
        req->error = "algorithm not allowed";
        return NGX_DECLINED;
    }

    if (json_object_get(header, "crit") != NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token jwt: a \"crit\" header");
        req->error = "critical header not supported";
        return NGX_DECLINED;
    }

    kid = json_object_get(header, "kid");

    if (!json_is_string(kid)) {
        req->error = "no key id";
        return NGX_DECLINED;
    }

    jwks = req->conf->jwks;

    jwk = ngx_mail_plus_jwks_find(jwks, (u_char *) json_string_value(kid),
                                  json_string_length(kid));

    if (jwk == NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token jwt: unknown key");
        req->error = "unknown key";
        return NGX_DECLINED;
    }

    if (jwk->type != type) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token jwt: key \"%V\" is not for its "
                       "algorithm", &jwk->kid);
        req->error = "algorithm not allowed";
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token jwt: header names key \"%V\"", &jwk->kid);

    *key = jwk;

    return NGX_OK;
}


/* NGX_OK: the signature is right; NGX_DECLINED: it is not */

static ngx_int_t
ngx_mail_plus_jwt_signature(ngx_mail_plus_token_req_t *req,
    ngx_mail_plus_jwk_t *key, ngx_str_t *input, ngx_str_t *part)
{
    int            rc;
    size_t         len;
    u_char        *sig;
    ngx_str_t      raw;
    EVP_MD_CTX    *ctx;
    const EVP_MD  *md;
    u_char         buf[NGX_MAIL_PLUS_JWT_SIG_MAX];
    u_char         der[80];

    req->error = "bad signature";

    raw.data = buf;

    if (part->len / 4 * 3 + 2 > sizeof(buf)
        || ngx_mail_plus_jwt_base64url(&raw, part->data, part->len) != NGX_OK)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: token jwt: signature too long or malformed");
        return NGX_DECLINED;
    }

    sig = raw.data;
    len = raw.len;
    md = EVP_sha256();

    switch (key->type) {

    case NGX_MAIL_PLUS_JWK_RSA:
        if (len != (size_t) EVP_PKEY_get_size(key->pkey)) {
            return NGX_DECLINED;
        }

        break;

    case NGX_MAIL_PLUS_JWK_P256:
        if (len != 64) {
            return NGX_DECLINED;
        }

        len = ngx_mail_plus_jwt_ecdsa_der(raw.data, der);
        if (len == 0) {
            return NGX_ERROR;
        }

        sig = der;
        break;

    default: /* NGX_MAIL_PLUS_JWK_ED25519 */
        if (len != 64) {
            return NGX_DECLINED;
        }

        md = NULL;
        break;
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    rc = EVP_DigestVerifyInit(ctx, NULL, md, NULL, key->pkey);

    if (rc == 1) {
        rc = EVP_DigestVerify(ctx, sig, len, input->data, input->len);
    }

    EVP_MD_CTX_free(ctx);
    ERR_clear_error();

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token jwt: signature by \"%V\" %s", &key->kid,
                   rc == 1 ? "verified" : "wrong");

    return rc == 1 ? NGX_OK : NGX_DECLINED;
}


/* JOSE's ES256 signature, r || s of 32 bytes each, as DER for OpenSSL */

static size_t
ngx_mail_plus_jwt_ecdsa_der(u_char *raw, u_char *der)
{
    int         len;
    BIGNUM     *r, *s;
    ECDSA_SIG  *es;

    es = ECDSA_SIG_new();
    r = BN_bin2bn(raw, 32, NULL);
    s = BN_bin2bn(raw + 32, 32, NULL);

    if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return 0;
    }

    /* r and s belong to es now; 2 * (2 + 33) + 2 bytes at most */

    len = i2d_ECDSA_SIG(es, &der);

    ECDSA_SIG_free(es);

    return len > 0 ? (size_t) len : 0;
}


/* NGX_OK, NGX_DECLINED (req->error set), NGX_ERROR */

static ngx_int_t
ngx_mail_plus_jwt_claims(ngx_mail_plus_token_req_t *req, json_t *claims)
{
    time_t                       now, exp, nbf, iat, skew;
    json_t                      *iss;
    ngx_int_t                    rc;
    ngx_mail_plus_token_conf_t  *tcf;

    tcf = req->conf;
    now = ngx_time();
    skew = tcf->skew;

    rc = ngx_mail_plus_jwt_time(claims, "exp", &exp);

    if (rc != NGX_OK) {
        req->error = (rc == NGX_DECLINED) ? "no expiry" : "malformed";
        return NGX_DECLINED;
    }

    if (now >= exp + skew) {
        req->error = "expired";
        return NGX_DECLINED;
    }

    req->error = "malformed";

    rc = ngx_mail_plus_jwt_time(claims, "nbf", &nbf);

    if (rc == NGX_ERROR) {
        return NGX_DECLINED;
    }

    if (rc == NGX_OK && nbf > now + skew) {
        req->error = "not yet valid";
        return NGX_DECLINED;
    }

    rc = ngx_mail_plus_jwt_time(claims, "iat", &iat);

    if (rc == NGX_ERROR) {
        return NGX_DECLINED;
    }

    if (rc == NGX_OK && iat > now + skew) {
        req->error = "not yet valid";
        return NGX_DECLINED;
    }

    iss = json_object_get(claims, "iss");

    if (!json_is_string(iss)
        || tcf->issuer.len == 0
        || json_string_length(iss) != tcf->issuer.len
        || ngx_memcmp(json_string_value(iss), tcf->issuer.data,
                      tcf->issuer.len) != 0)
    {
        req->error = "wrong issuer";
        return NGX_DECLINED;
    }

    if (ngx_mail_plus_jwt_audience(tcf, json_object_get(claims, "aud"))
        != NGX_OK)
    {
        req->error = "wrong audience";
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token jwt: issuer, audience and times right, "
                   "expires in %T s", exp - now);

    req->expires = exp;

    return ngx_mail_plus_jwt_login(req, claims);
}


/* a NumericDate: NGX_OK, NGX_DECLINED (absent), NGX_ERROR (wrong) */

static ngx_int_t
ngx_mail_plus_jwt_time(json_t *claims, const char *name, time_t *t)
{
    double   v;
    json_t  *value;

    value = json_object_get(claims, name);

    if (value == NULL) {
        return NGX_DECLINED;
    }

    if (!json_is_number(value)) {
        return NGX_ERROR;
    }

    v = json_number_value(value);

    if (!(v >= 0 && v <= NGX_MAIL_PLUS_JWT_TIME_MAX)) {
        return NGX_ERROR;
    }

    *t = (time_t) v;

    return NGX_OK;
}


/* "aud": a string or an array of them, one of the configured audiences */

static ngx_int_t
ngx_mail_plus_jwt_audience(ngx_mail_plus_token_conf_t *tcf, json_t *aud)
{
    size_t       i, n, len;
    json_t      *one;
    ngx_str_t   *a;
    ngx_uint_t   k;
    const char  *s;

    if (tcf->audiences == NULL) {
        return NGX_DECLINED;
    }

    a = tcf->audiences->elts;
    n = json_is_array(aud) ? json_array_size(aud) : 1;

    for (i = 0; i < n; i++) {
        one = json_is_array(aud) ? json_array_get(aud, i) : aud;

        if (!json_is_string(one)) {
            continue;
        }

        s = json_string_value(one);
        len = json_string_length(one);

        for (k = 0; k < tcf->audiences->nelts; k++) {
            if (a[k].len == len && a[k].len
                && ngx_memcmp(a[k].data, s, len) == 0)
            {
                return NGX_OK;
            }
        }
    }

    return NGX_DECLINED;
}


/* the login claim: checked, the SASL user's, copied into req->login */

static ngx_int_t
ngx_mail_plus_jwt_login(ngx_mail_plus_token_req_t *req, json_t *claims)
{
    u_char      *p;
    size_t       i, len;
    json_t      *value;
    const char  *s;

    value = json_object_getn(claims, (const char *) req->conf->claim.data,
                             req->conf->claim.len);

    if (!json_is_string(value)) {
        req->error = "no login claim";
        return NGX_DECLINED;
    }

    s = json_string_value(value);
    len = json_string_length(value);

    if (len == 0 || len > NGX_MAIL_PLUS_JWT_LOGIN_MAX) {
        req->error = "bad login claim";
        return NGX_DECLINED;
    }

    for (i = 0; i < len; i++) {
        if ((u_char) s[i] <= 0x20 || s[i] == 0x7f || s[i] == '"'
            || s[i] == '\\')
        {
            req->error = "bad login claim";
            return NGX_DECLINED;
        }
    }

    if (req->user.len
        && (req->user.len != len
            || ngx_strncasecmp(req->user.data, (u_char *) s, len) != 0))
    {
        req->error = "the token is for another user";
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(req->pool, len);
    if (p == NULL) {
        req->error = NULL;
        return NGX_ERROR;
    }

    ngx_memcpy(p, s, len);

    req->login.data = p;
    req->login.len = len;

    return NGX_OK;
}


/*
 * RFC 4648 section 5, strictly: the URL-safe alphabet, no padding, no
 * length of 4n + 1, and the bits past the last byte zero, so that a value
 * has one encoding only; dst->data has room for len / 4 * 3 + 2 bytes
 */

ngx_int_t
ngx_mail_plus_jwt_base64url(ngx_str_t *dst, u_char *src, size_t len)
{
    size_t     i;
    ngx_int_t  v;
    ngx_str_t  text;

    if (len % 4 == 1) {
        return NGX_ERROR;
    }

    /* nginx's decoder stops at "=" and keeps the last bits: checked here */

    v = 0;

    for (i = 0; i < len; i++) {
        v = ngx_mail_plus_jwt_base64url_value(src[i]);
        if (v < 0) {
            return NGX_ERROR;
        }
    }

    if ((len % 4 == 2 && (v & 0x0f)) || (len % 4 == 3 && (v & 0x03))) {
        return NGX_ERROR;
    }

    text.data = src;
    text.len = len;

    return ngx_decode_base64url(dst, &text);
}


static ngx_int_t
ngx_mail_plus_jwt_base64url_value(u_char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }

    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }

    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }

    if (ch == '-') {
        return 62;
    }

    if (ch == '_') {
        return 63;
    }

    return -1;
}
