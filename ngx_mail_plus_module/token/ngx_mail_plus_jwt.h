/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_JWT_H_INCLUDED_
#define _NGX_MAIL_PLUS_JWT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>
#include <openssl/evp.h>


/*
 * The JWT verifier's keys: the identity provider's public keys, read from
 * a JWKS file (RFC 7517) at configuration time by ngx_mail_plus_jwks.c,
 * used by ngx_mail_plus_jwt.c.  One signature algorithm per key type:
 * RS256 for RSA, ES256 for EC P-256, EdDSA for OKP Ed25519 (RFC 8037).
 */


#define NGX_MAIL_PLUS_JWK_RSA          1
#define NGX_MAIL_PLUS_JWK_P256         2
#define NGX_MAIL_PLUS_JWK_ED25519      3

/* a kid, a key's base64url member, a token's decoded header: their limits */

#define NGX_MAIL_PLUS_JWK_KID_MAX      255
#define NGX_MAIL_PLUS_JWK_VALUE_MAX    1024
#define NGX_MAIL_PLUS_JWK_RSA_MIN      2048
#define NGX_MAIL_PLUS_JWK_RSA_MAX      8192


typedef struct {
    ngx_str_t                  kid;
    ngx_uint_t                 type;        /* NGX_MAIL_PLUS_JWK_* */
    EVP_PKEY                  *pkey;
} ngx_mail_plus_jwk_t;


typedef struct {
    ngx_mail_plus_jwk_t       *keys;
    ngx_uint_t                 nkeys;
} ngx_mail_plus_jwks_t;


char *ngx_mail_plus_jwks_load(ngx_conf_t *cf, ngx_str_t *file, void **jwks);
ngx_mail_plus_jwks_t *ngx_mail_plus_jwks_parse(ngx_pool_t *pool,
    ngx_log_t *log, ngx_str_t *file, json_t *root, u_char *err,
    size_t errlen);
ngx_mail_plus_jwk_t *ngx_mail_plus_jwks_find(ngx_mail_plus_jwks_t *jwks,
    u_char *kid, size_t len);

ngx_int_t ngx_mail_plus_jwt_base64url(ngx_str_t *dst, u_char *src,
    size_t len);


#endif /* _NGX_MAIL_PLUS_JWT_H_INCLUDED_ */
