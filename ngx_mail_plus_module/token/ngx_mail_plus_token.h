
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_TOKEN_H_INCLUDED_
#define _NGX_MAIL_PLUS_TOKEN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"


/*
 * Token logins (token/): an OAuth 2.0 bearer token, sent with the SASL
 * mechanisms OAUTHBEARER (RFC 7628) or XOAUTH2, is checked here and
 * names the user it logs in.  The router's login check
 * (router/ngx_mail_plus_check.c) asks through ngx_mail_plus_token_verify();
 * one verifier, chosen by the configuration, answers:
 *
 *   - jwt: the token is a JWS signed by the identity provider, checked
 *     locally against the keys of a JWKS file (ngx_mail_plus_jwt.c,
 *     ngx_mail_plus_jwks.c);
 *   - introspection: the identity provider is asked (RFC 7662), over
 *     HTTP(S), asynchronously; answers are kept in the shared zone for the
 *     token's remaining lifetime (ngx_mail_plus_token_introspect.c);
 *   - dovecot: Dovecot's auth service checks it with its "oauth2" passdb,
 *     through a "router_directory dovecot" (ngx_mail_plus_token_dovecot.c).
 *
 * A verifier answers VALID with the login the token names (the
 * configured claim), INVALID (a refusal, counted by throttling as a failed
 * password is) or TEMPFAIL (the verifier could not answer), either at
 * once (ngx_mail_plus_token_verify() returns NGX_OK) or later from the
 * event loop (NGX_AGAIN, then req->handler is called once).  A request
 * the caller abandons (ngx_mail_plus_token_free()) while a verifier works
 * on it is only marked, and freed when the verifier is done.
 *
 * The token is a credential: it is never written to a log line, not even
 * at debug level, nor kept anywhere but the request's pool; the zone keeps
 * only a hash of it.
 */


#define NGX_MAIL_PLUS_TOKEN_VALID         0
#define NGX_MAIL_PLUS_TOKEN_INVALID       1
#define NGX_MAIL_PLUS_TOKEN_TEMPFAIL      2


/* the verifier configured */

#define NGX_MAIL_PLUS_TOKEN_NONE          0
#define NGX_MAIL_PLUS_TOKEN_JWT           1
#define NGX_MAIL_PLUS_TOKEN_INTROSPECT    2
#define NGX_MAIL_PLUS_TOKEN_DOVECOT       3


typedef struct ngx_mail_plus_token_req_s  ngx_mail_plus_token_req_t;

typedef void (*ngx_mail_plus_token_handler_pt)(ngx_mail_plus_token_req_t *req);


/* the "router_token_*" directives (ngx_mail_plus_token_module.c) */

struct ngx_mail_plus_token_conf_s {
    ngx_uint_t                      verifier;   /* NGX_MAIL_PLUS_TOKEN_* */
    size_t                          max_size;   /* of a token, bytes */

    ngx_str_t                       claim;      /* the login's claim */
    time_t                          skew;       /* exp, nbf: clock skew */
    ngx_str_t                       error;      /* RFC 7628 JSON status of
                                                   a refusal */

    /* jwt (ngx_mail_plus_jwt.c, ngx_mail_plus_jwks.c) */
    ngx_str_t                       jwks_file;
    void                           *jwks;
    ngx_str_t                       issuer;
    ngx_array_t                    *audiences;  /* ngx_str_t */

    /* introspection (ngx_mail_plus_token_introspect.c) */
    void                           *introspect;

    /* dovecot (ngx_mail_plus_token_dovecot.c) */
    ngx_str_t                       dovecot_name;
    void                           *dovecot;    /* ngx_mail_plus_dir_t */

    u_char                         *file;       /* of the first directive */
    ngx_uint_t                      line;
};


struct ngx_mail_plus_token_req_s {
    ngx_pool_t                     *pool;       /* the request's own */
    ngx_log_t                      *log;        /* the request's own */
    ngx_mail_plus_token_conf_t     *conf;

    /* the question: copies in the request's pool */
    ngx_str_t                       token;      /* the bearer token */
    ngx_str_t                       user;       /* the SASL user, if the
                                                   client gave one */
    ngx_uint_t                      mech;       /* NGX_MAIL_PLUS_SASL_* */
    ngx_uint_t                      protocol;   /* NGX_MAIL_PLUS_IMAP ... */
    ngx_str_t                       client;     /* the client's address */

    /* the answer */
    ngx_uint_t                      result;     /* NGX_MAIL_PLUS_TOKEN_* */
    ngx_str_t                       login;      /* VALID: the user named */
    time_t                          expires;    /* VALID: 0 if unknown */
    const char                     *error;      /* why, for the log: never
                                                   the token's bytes */

    ngx_mail_plus_token_handler_pt  handler;    /* after NGX_AGAIN */
    void                           *data;
    void                           *ctx;        /* the verifier's */

    unsigned                        pending:1;
    unsigned                        cancelled:1;
};


extern ngx_module_t  ngx_mail_plus_token_module;


/* for the router's login check, SMTP AUTH, the auth_http endpoint */

ngx_uint_t ngx_mail_plus_token_enabled(ngx_mail_plus_main_conf_t *mpcf);
ngx_mail_plus_token_req_t *ngx_mail_plus_token_create(
    ngx_mail_plus_main_conf_t *mpcf, ngx_log_t *log);
ngx_int_t ngx_mail_plus_token_set(ngx_mail_plus_token_req_t *req,
    ngx_str_t *token, ngx_str_t *user, ngx_uint_t mech, ngx_uint_t protocol,
    ngx_str_t *client);
ngx_int_t ngx_mail_plus_token_verify(ngx_mail_plus_token_req_t *req);
void ngx_mail_plus_token_free(ngx_mail_plus_token_req_t *req);

/* a verifier that answered later: calls req->handler, or frees req */

void ngx_mail_plus_token_done(ngx_mail_plus_token_req_t *req);


/* the verifiers: NGX_OK (req->result set), NGX_AGAIN, NGX_ERROR */

ngx_int_t ngx_mail_plus_jwt_verify(ngx_mail_plus_token_req_t *req);
ngx_int_t ngx_mail_plus_token_introspect(ngx_mail_plus_token_req_t *req);
ngx_int_t ngx_mail_plus_token_dovecot(ngx_mail_plus_token_req_t *req);

/* their directives and their checks at the end of the "mail" block */

char *ngx_mail_plus_token_introspect_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_mail_plus_token_introspect_init(ngx_conf_t *cf,
    ngx_mail_plus_token_conf_t *tcf);
char *ngx_mail_plus_token_dovecot_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_mail_plus_token_dovecot_init(ngx_conf_t *cf,
    ngx_mail_plus_token_conf_t *tcf);


#endif /* _NGX_MAIL_PLUS_TOKEN_H_INCLUDED_ */
