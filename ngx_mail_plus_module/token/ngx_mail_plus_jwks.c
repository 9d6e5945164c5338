/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_jwt.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>


/*
 * The JWKS file of "router_token_jwks" (RFC 7517), read at configuration
 * time, so that "nginx -s reload" reads it again.  Each member of its
 * "keys" array becomes an EVP_PKEY built from the key's parameters with
 * EVP_PKEY_fromdata() and checked with EVP_PKEY_public_check():
 *
 *   - RSA ("n", "e"), 2048 to 8192 bits, for RS256;
 *   - EC on P-256 ("crv", "x", "y", each coordinate 32 bytes), for ES256;
 *   - OKP on Ed25519 ("crv", "x", 32 bytes), for EdDSA (RFC 8037).
 *
 * A key for another "use" than "sig", of another type or curve, or whose
 * "alg" is not the one of its type, is skipped with a warning.  A key of
 * a supported type that is wrong (a parameter missing or not base64url, a
 * public key OpenSSL refuses, a short modulus, a missing or repeated
 * "kid") fails the configuration, as does a file that cannot be read, is
 * not JSON or has no key left.  The keys live as long as the pool of the
 * configuration that read them.
 */


static ngx_int_t ngx_mail_plus_jwks_key(ngx_pool_t *pool,
    ngx_mail_plus_jwks_t *jwks, json_t *jwk, const char **reason);
static ngx_int_t ngx_mail_plus_jwks_type(json_t *jwk, ngx_uint_t *type,
    const char **reason);
static ngx_int_t ngx_mail_plus_jwks_kid(ngx_pool_t *pool,
    ngx_mail_plus_jwks_t *jwks, json_t *jwk, ngx_str_t *kid,
    const char **reason);
static EVP_PKEY *ngx_mail_plus_jwks_rsa(json_t *jwk, const char **reason);
static EVP_PKEY *ngx_mail_plus_jwks_p256(json_t *jwk, const char **reason);
static EVP_PKEY *ngx_mail_plus_jwks_ed25519(json_t *jwk,
    const char **reason);
static EVP_PKEY *ngx_mail_plus_jwks_fromdata(const char *type,
    OSSL_PARAM_BLD *bld, const char **reason);
static ngx_int_t ngx_mail_plus_jwks_value(json_t *jwk, const char *name,
    ngx_str_t *value);
static void ngx_mail_plus_jwks_cleanup(void *data);


/* the JWA algorithm and the JWK type and curve of each key type */

static const char  *ngx_mail_plus_jwks_algs[] = {
    NULL, "RS256", "ES256", "EdDSA"
};


char *
ngx_mail_plus_jwks_load(ngx_conf_t *cf, ngx_str_t *file, void **jwks)
{
    u_char                 err[NGX_MAX_CONF_ERRSTR];
    json_t                *root;
    json_error_t           jerr;
    ngx_mail_plus_jwks_t  *keys;

    /* the name is NUL-terminated: ngx_conf_full_name() or the parser */

    root = json_load_file((char *) file->data, JSON_REJECT_DUPLICATES,
                          &jerr);

    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_cannot_open_file) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "router_token_jwks \"%V\" cannot be read: %s",
                               file, jerr.text);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "router_token_jwks \"%V\" is not JSON: %s "
                               "at line %d", file, jerr.text, jerr.line);
        }

        return NGX_CONF_ERROR;
    }

    keys = ngx_mail_plus_jwks_parse(cf->pool, cf->log, file, root, err,
                                    sizeof(err));

    json_decref(root);

    if (keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "router_token_jwks \"%V\": %s", file, err);
        return NGX_CONF_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, cf->log, 0,
                   "router: token jwks \"%V\": %ui keys", file, keys->nkeys);

    *jwks = keys;

    return NGX_CONF_OK;
}


/*
 * The keys of a JWKS, kept in pool (a cleanup frees them); NULL with the
 * reason in err when the JWKS is refused.
 */

ngx_mail_plus_jwks_t *
ngx_mail_plus_jwks_parse(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *file,
    json_t *root, u_char *err, size_t errlen)
{
    size_t                 i, n;
    json_t                *keys;
    ngx_int_t              rc;
    const char            *reason;
    ngx_pool_cleanup_t    *cln;
    ngx_mail_plus_jwks_t  *jwks;

    keys = json_object_get(root, "keys");

    if (!json_is_array(keys)) {
        ngx_snprintf(err, errlen, "no \"keys\" array%Z");
        return NULL;
    }

    n = json_array_size(keys);

    jwks = ngx_pcalloc(pool, sizeof(ngx_mail_plus_jwks_t));
    if (jwks == NULL) {
        ngx_snprintf(err, errlen, "out of memory%Z");
        return NULL;
    }

    jwks->keys = ngx_pcalloc(pool, (n + 1) * sizeof(ngx_mail_plus_jwk_t));
    if (jwks->keys == NULL) {
        ngx_snprintf(err, errlen, "out of memory%Z");
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        ngx_snprintf(err, errlen, "out of memory%Z");
        return NULL;
    }

    cln->handler = ngx_mail_plus_jwks_cleanup;
    cln->data = jwks;

    for (i = 0; i < n; i++) {
        rc = ngx_mail_plus_jwks_key(pool, jwks, json_array_get(keys, i),
                                    &reason);

        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "router_token_jwks \"%V\": key #%uz skipped: %s",
                          file, i + 1, reason);
            continue;
        }

        if (rc != NGX_OK) {
            ngx_snprintf(err, errlen, "key #%uz: %s%Z", i + 1, reason);
            return NULL;
        }
    }

    if (jwks->nkeys == 0) {
        ngx_snprintf(err, errlen, "no usable key%Z");
        return NULL;
    }

    return jwks;
}


ngx_mail_plus_jwk_t *
ngx_mail_plus_jwks_find(ngx_mail_plus_jwks_t *jwks, u_char *kid, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < jwks->nkeys; i++) {
        if (jwks->keys[i].kid.len == len
            && ngx_memcmp(jwks->keys[i].kid.data, kid, len) == 0)
        {
            return &jwks->keys[i];
        }
    }

    return NULL;
}


/* NGX_OK: a key added; NGX_DECLINED: skipped; NGX_ERROR: a wrong key */

static ngx_int_t
ngx_mail_plus_jwks_key(ngx_pool_t *pool, ngx_mail_plus_jwks_t *jwks,
    json_t *jwk, const char **reason)
{
    EVP_PKEY             *pkey;
    ngx_int_t             rc;
    ngx_uint_t            type;
    ngx_mail_plus_jwk_t  *key;

    if (!json_is_object(jwk)) {
        *reason = "not an object";
        return NGX_ERROR;
    }

    rc = ngx_mail_plus_jwks_type(jwk, &type, reason);
    if (rc != NGX_OK) {
        return rc;
    }

    key = &jwks->keys[jwks->nkeys];

    if (ngx_mail_plus_jwks_kid(pool, jwks, jwk, &key->kid, reason)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    switch (type) {

    case NGX_MAIL_PLUS_JWK_RSA:
        pkey = ngx_mail_plus_jwks_rsa(jwk, reason);
        break;

    case NGX_MAIL_PLUS_JWK_P256:
        pkey = ngx_mail_plus_jwks_p256(jwk, reason);
        break;

    default: /* NGX_MAIL_PLUS_JWK_ED25519 */
        pkey = ngx_mail_plus_jwks_ed25519(jwk, reason);
        break;
    }

    if (pkey == NULL) {
        return NGX_ERROR;
    }

    key->type = type;
    key->pkey = pkey;
    jwks->nkeys++;

    return NGX_OK;
}


/* the key's type from "kty" and "crv"; "use" and "alg" must fit it */

static ngx_int_t
ngx_mail_plus_jwks_type(json_t *jwk, ngx_uint_t *type, const char **reason)
{
    json_t      *use, *alg;
    const char  *kty, *crv;

    kty = json_string_value(json_object_get(jwk, "kty"));

    if (kty == NULL) {
        *reason = "no \"kty\"";
        return NGX_ERROR;
    }

    use = json_object_get(jwk, "use");

    if (use && !(json_is_string(use)
                 && ngx_strcmp(json_string_value(use), "sig") == 0))
    {
        *reason = "its \"use\" is not \"sig\"";
        return NGX_DECLINED;
    }

    crv = json_string_value(json_object_get(jwk, "crv"));

    if (ngx_strcmp(kty, "RSA") == 0) {
        *type = NGX_MAIL_PLUS_JWK_RSA;

    } else if (ngx_strcmp(kty, "EC") == 0) {
        if (crv == NULL || ngx_strcmp(crv, "P-256") != 0) {
            *reason = "an EC key on another curve than P-256";
            return NGX_DECLINED;
        }

        *type = NGX_MAIL_PLUS_JWK_P256;

    } else if (ngx_strcmp(kty, "OKP") == 0) {
        if (crv == NULL || ngx_strcmp(crv, "Ed25519") != 0) {
            *reason = "an OKP key on another curve than Ed25519";
            return NGX_DECLINED;
        }

        *type = NGX_MAIL_PLUS_JWK_ED25519;

    } else {
        *reason = "its \"kty\" is not RSA, EC or OKP";
        return NGX_DECLINED;
    }

    alg = json_object_get(jwk, "alg");

    if (alg && !(json_is_string(alg)
                 && ngx_strcmp(json_string_value(alg),
                               ngx_mail_plus_jwks_algs[*type]) == 0))
    {
        *reason = "its \"alg\" is not RS256, ES256 or EdDSA as its type";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* "kid": 1 to 255 printable characters, no quote nor backslash, unique */

static ngx_int_t
ngx_mail_plus_jwks_kid(ngx_pool_t *pool, ngx_mail_plus_jwks_t *jwks,
    json_t *jwk, ngx_str_t *kid, const char **reason)
{
    u_char      *p;
    size_t       i, len;
    json_t      *value;
    const char  *s;

    value = json_object_get(jwk, "kid");

    if (!json_is_string(value)) {
        *reason = "no \"kid\"";
        return NGX_ERROR;
    }

    s = json_string_value(value);
    len = json_string_length(value);

    if (len == 0 || len > NGX_MAIL_PLUS_JWK_KID_MAX) {
        *reason = "its \"kid\" is empty or longer than 255 bytes";
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\') {
            *reason = "its \"kid\" has a character other than printable "
                      "ASCII, or a quote or a backslash";
            return NGX_ERROR;
        }
    }

    if (ngx_mail_plus_jwks_find(jwks, (u_char *) s, len) != NULL) {
        *reason = "its \"kid\" is the one of an earlier key";
        return NGX_ERROR;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        *reason = "out of memory";
        return NGX_ERROR;
    }

    ngx_memcpy(p, s, len);

    kid->data = p;
    kid->len = len;

    return NGX_OK;
}


static EVP_PKEY *
ngx_mail_plus_jwks_rsa(json_t *jwk, const char **reason)
{
    int              bits;
    BIGNUM          *n, *e;
    EVP_PKEY        *pkey;
    ngx_str_t        nv, ev;
    OSSL_PARAM_BLD  *bld;
    u_char           nbuf[NGX_MAIL_PLUS_JWK_VALUE_MAX];
    u_char           ebuf[NGX_MAIL_PLUS_JWK_VALUE_MAX];

    nv.data = nbuf;
    ev.data = ebuf;

    if (ngx_mail_plus_jwks_value(jwk, "n", &nv) != NGX_OK
        || ngx_mail_plus_jwks_value(jwk, "e", &ev) != NGX_OK
        || ev.len > 8)
    {
        *reason = "its \"n\" or \"e\" is missing, too long or not base64url";
        return NULL;
    }

    n = BN_bin2bn(nv.data, nv.len, NULL);
    e = BN_bin2bn(ev.data, ev.len, NULL);
    bld = OSSL_PARAM_BLD_new();

    pkey = NULL;
    *reason = "out of memory";

    if (n && e && bld
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
    {
        pkey = ngx_mail_plus_jwks_fromdata("RSA", bld, reason);
    }

    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);

    if (pkey == NULL) {
        return NULL;
    }

    bits = EVP_PKEY_get_bits(pkey);

    if (bits < NGX_MAIL_PLUS_JWK_RSA_MIN || bits > NGX_MAIL_PLUS_JWK_RSA_MAX) {
        EVP_PKEY_free(pkey);
        *reason = "an RSA key of less than 2048 or more than 8192 bits";
        return NULL;
    }

    return pkey;
}


static EVP_PKEY *
ngx_mail_plus_jwks_p256(json_t *jwk, const char **reason)
{
    EVP_PKEY        *pkey;
    ngx_str_t        x, y;
    OSSL_PARAM_BLD  *bld;
    u_char           point[1 + 2 * 32];
    u_char           xbuf[NGX_MAIL_PLUS_JWK_VALUE_MAX];
    u_char           ybuf[NGX_MAIL_PLUS_JWK_VALUE_MAX];

    x.data = xbuf;
    y.data = ybuf;

    if (ngx_mail_plus_jwks_value(jwk, "x", &x) != NGX_OK
        || ngx_mail_plus_jwks_value(jwk, "y", &y) != NGX_OK
        || x.len != 32 || y.len != 32)
    {
        *reason = "its \"x\" or \"y\" is missing, not base64url or not "
                  "32 bytes long";
        return NULL;
    }

    /* the uncompressed point: 04 || x || y */

    point[0] = 0x04;
    ngx_memcpy(&point[1], x.data, 32);
    ngx_memcpy(&point[33], y.data, 32);

    bld = OSSL_PARAM_BLD_new();

    pkey = NULL;
    *reason = "out of memory";

    if (bld
        && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           "prime256v1", 0)
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            point, sizeof(point)))
    {
        pkey = ngx_mail_plus_jwks_fromdata("EC", bld, reason);
    }

    OSSL_PARAM_BLD_free(bld);

    return pkey;
}


static EVP_PKEY *
ngx_mail_plus_jwks_ed25519(json_t *jwk, const char **reason)
{
    EVP_PKEY        *pkey;
    ngx_str_t        x;
    OSSL_PARAM_BLD  *bld;
    u_char           xbuf[NGX_MAIL_PLUS_JWK_VALUE_MAX];

    x.data = xbuf;

    if (ngx_mail_plus_jwks_value(jwk, "x", &x) != NGX_OK || x.len != 32) {
        *reason = "its \"x\" is missing, not base64url or not 32 bytes long";
        return NULL;
    }

    bld = OSSL_PARAM_BLD_new();

    pkey = NULL;
    *reason = "out of memory";

    if (bld
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            x.data, x.len))
    {
        pkey = ngx_mail_plus_jwks_fromdata("ED25519", bld, reason);
    }

    OSSL_PARAM_BLD_free(bld);

    return pkey;
}


/* a public key from its parameters, checked as OpenSSL checks one */

static EVP_PKEY *
ngx_mail_plus_jwks_fromdata(const char *type, OSSL_PARAM_BLD *bld,
    const char **reason)
{
    EVP_PKEY      *pkey;
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *ctx, *check;

    pkey = NULL;
    check = NULL;

    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (params == NULL || ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        *reason = "OpenSSL refuses its parameters";
        goto done;
    }

    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);

    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        *reason = "OpenSSL finds its public key wrong";
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

done:

    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);

    /* the reason is ours: OpenSSL's queue is not left for others */

    ERR_clear_error();

    return pkey;
}


/* a base64url member, decoded into value->data (JWK_VALUE_MAX bytes) */

static ngx_int_t
ngx_mail_plus_jwks_value(json_t *jwk, const char *name, ngx_str_t *value)
{
    size_t   len;
    json_t  *s;

    s = json_object_get(jwk, name);

    if (!json_is_string(s)) {
        return NGX_ERROR;
    }

    len = json_string_length(s);

    if (len == 0 || len / 4 * 3 + 2 > NGX_MAIL_PLUS_JWK_VALUE_MAX) {
        return NGX_ERROR;
    }

    return ngx_mail_plus_jwt_base64url(value, (u_char *) json_string_value(s),
                                       len);
}


static void
ngx_mail_plus_jwks_cleanup(void *data)
{
    ngx_mail_plus_jwks_t *jwks = data;

    ngx_uint_t  i;

    for (i = 0; i < jwks->nkeys; i++) {
        EVP_PKEY_free(jwks->keys[i].pkey);
    }

    jwks->nkeys = 0;
}
