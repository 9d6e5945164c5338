
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_DIRECTORY_H_INCLUDED_
#define _NGX_MAIL_PLUS_DIRECTORY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"


/*
 * Directories (directory/): the user databases the router asks when its
 * users file does not know a login, in the order of the "router_directory"
 * blocks.  The router asks through ngx_mail_plus_dir_lookup(); a source
 * (Dovecot's auth service, PostgreSQL, LDAP) answers through the
 * operations below, asynchronously, in the event loop.  Answers go
 * through the cache of the shared zone (ngx_mail_plus_directory_cache.c)
 * before a source is asked.
 *
 * What a source must do:
 *
 *   - conf(): read its parameters with ngx_mail_plus_dir_param() and check
 *     them; an unreachable server only warns.  Parameters it did not read
 *     are refused by the caller.
 *   - init_process(): set up its per-worker state (dir->data); connect
 *     lazily, at the first lookup.
 *   - lookup(): start a lookup and return NGX_AGAIN, then call
 *     ngx_mail_plus_dir_done(req) exactly once, later, from the event
 *     loop (never from inside lookup()); or answer at once and return
 *     NGX_OK without calling it.  Every step has a timeout (dir->timeout);
 *     a source that cannot be reached answers TEMPFAIL with req->error
 *     set, and reports its state with ngx_mail_plus_dir_state().
 *   - A request may be abandoned by its caller while the source works
 *     on it: the source still calls ngx_mail_plus_dir_done(), which frees
 *     it.  A source never keeps a pointer to a request after that call.
 *   - exit_process(): close its connections.
 */


#define NGX_MAIL_PLUS_DIR_NAME_LEN    32


/* what is asked */

#define NGX_MAIL_PLUS_DIR_PASSDB      0   /* a login, with its password */
#define NGX_MAIL_PLUS_DIR_USERDB      1   /* a recipient: does it exist */


/* the answer */

#define NGX_MAIL_PLUS_DIR_FOUND       0   /* the user exists (and, if the
                                             source checked it, the
                                             password is right) */
#define NGX_MAIL_PLUS_DIR_UNKNOWN     1   /* no such user here: the next
                                             directory is asked */
#define NGX_MAIL_PLUS_DIR_REFUSED     2   /* the source checked the
                                             password: wrong */
#define NGX_MAIL_PLUS_DIR_TEMPFAIL    3   /* the source could not answer */


typedef struct ngx_mail_plus_dir_s      ngx_mail_plus_dir_t;
typedef struct ngx_mail_plus_dir_req_s  ngx_mail_plus_dir_req_t;


/* one parameter of a "router_directory" block: a line of it */

typedef struct {
    ngx_str_t                   name;
    ngx_array_t                *args;      /* ngx_str_t, without the name */
    u_char                     *file;
    ngx_uint_t                  line;
    unsigned                    used:1;
} ngx_mail_plus_dir_param_t;


typedef struct {
    ngx_str_t                   type;      /* "dovecot", "pgsql", "ldap" */
    char                     *(*conf)(ngx_conf_t *cf,
                                      ngx_mail_plus_dir_t *dir);
    ngx_int_t                 (*init_process)(ngx_cycle_t *cycle,
                                              ngx_mail_plus_dir_t *dir);
    void                      (*exit_process)(ngx_cycle_t *cycle,
                                              ngx_mail_plus_dir_t *dir);
    ngx_int_t                 (*lookup)(ngx_mail_plus_dir_req_t *req);
} ngx_mail_plus_dir_ops_t;


/* one "router_directory" block */

struct ngx_mail_plus_dir_s {
    ngx_str_t                   name;      /* for logs and metrics */
    ngx_uint_t                  index;     /* in the order of the blocks */
    ngx_mail_plus_dir_ops_t    *ops;
    ngx_array_t                 params;    /* ngx_mail_plus_dir_param_t */

    ngx_msec_t                  timeout;      /* "timeout", each step */
    ngx_uint_t                  connections;  /* "connections", a worker */
    ngx_flag_t                  userdb;       /* the source can look up
                                                 recipients */

    void                       *conf;      /* the source's configuration */
    void                       *data;      /* the source's, per worker */

    ngx_mail_plus_main_conf_t  *mpcf;
    u_char                     *file;
    ngx_uint_t                  line;
};


typedef void (*ngx_mail_plus_dir_handler_pt)(ngx_mail_plus_dir_req_t *req);


struct ngx_mail_plus_dir_req_s {
    ngx_pool_t                 *pool;      /* the request's own */
    ngx_log_t                  *log;
    ngx_mail_plus_main_conf_t  *mpcf;
    ngx_mail_plus_dir_t        *dir;      /* the one asked */

    /* the question */

    ngx_uint_t                  type;      /* NGX_MAIL_PLUS_DIR_PASSDB ... */
    ngx_uint_t                  protocol;  /* NGX_MAIL_PLUS_IMAP ... */
    ngx_str_t                   login;     /* no control character */
    ngx_str_t                   password;  /* PASSDB: NUL-terminated, no
                                              control character */
    ngx_str_t                   client;    /* the client's address */
    ngx_uint_t                  mech;      /* 0: the password, PLAIN;
                                              NGX_MAIL_PLUS_SASL_*: the
                                              "response" of a token login
                                              (dovecot only) */
    ngx_str_t                   response;  /* with mech: the SASL response,
                                              raw; a credential */

    /* the answer */

    ngx_uint_t                  result;    /* NGX_MAIL_PLUS_DIR_FOUND ... */
    ngx_str_t                   hash;      /* the password as stored:
                                              "{SCHEME}..." or "$id$...";
                                              the router checks it */
    ngx_mail_plus_user_fields_t  fields;
    ngx_str_t                   error;     /* TEMPFAIL: why, for the log */
    ngx_str_t                   user;      /* with mech, FOUND: the user the
                                              source named ("user=") */
    unsigned                    verified:1;  /* the source checked the
                                                password itself */

    /* the caller's */

    ngx_mail_plus_dir_handler_pt  handler;
    void                       *data;

    /* the source's, while it works on the request */

    void                       *ctx;
    ngx_queue_t                 queue;

    /* the directory's own */

    ngx_uint_t                  next;      /* the next directory to ask */
    ngx_uint_t                  hmac_len;
    u_char                      hmac[32];  /* of the password, for the
                                              cache */
    unsigned                    pending:1;
    unsigned                    cancelled:1;
    unsigned                    cached:1;  /* the answer is the cache's */
    unsigned                    stale:1;
    unsigned                    tempfail:1;  /* one could not answer */
    unsigned                    one:1;     /* one directory asked, no
                                              cache (ngx_mail_plus_dir_ask) */
};


/* the sources */

extern ngx_mail_plus_dir_ops_t  ngx_mail_plus_dir_dovecot_ops;
extern ngx_mail_plus_dir_ops_t  ngx_mail_plus_dir_pgsql_ops;
extern ngx_mail_plus_dir_ops_t  ngx_mail_plus_dir_ldap_ops;


/* for the sources (ngx_mail_plus_directory.c) */

ngx_mail_plus_dir_param_t *ngx_mail_plus_dir_param(ngx_mail_plus_dir_t *dir,
    char *name);
void ngx_mail_plus_dir_done(ngx_mail_plus_dir_req_t *req);
void ngx_mail_plus_dir_state(ngx_mail_plus_dir_t *dir, ngx_uint_t up,
    ngx_str_t *reason, ngx_log_t *log);

/*
 * for the router: "router_directory", the per-worker state, a lookup in
 * order through the cache and the directories
 */

char *ngx_mail_plus_dir_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_mail_plus_dir_init_process(ngx_cycle_t *cycle,
    ngx_mail_plus_main_conf_t *mpcf);
void ngx_mail_plus_dir_exit_process(ngx_cycle_t *cycle,
    ngx_mail_plus_main_conf_t *mpcf);
ngx_mail_plus_dir_req_t *ngx_mail_plus_dir_create(
    ngx_mail_plus_main_conf_t *mpcf, ngx_log_t *log);
ngx_int_t ngx_mail_plus_dir_lookup(ngx_mail_plus_dir_req_t *req);
ngx_mail_plus_dir_t *ngx_mail_plus_dir_find(ngx_mail_plus_main_conf_t *mpcf,
    ngx_str_t *name);
ngx_int_t ngx_mail_plus_dir_ask(ngx_mail_plus_dir_req_t *req,
    ngx_mail_plus_dir_t *dir);
void ngx_mail_plus_dir_verified(ngx_mail_plus_dir_req_t *req,
    ngx_uint_t right);
void ngx_mail_plus_dir_free(ngx_mail_plus_dir_req_t *req);

/* the cache (ngx_mail_plus_directory_cache.c) */

ngx_int_t ngx_mail_plus_dir_cache_get(ngx_mail_plus_dir_req_t *req,
    ngx_uint_t stale);
void ngx_mail_plus_dir_cache_put(ngx_mail_plus_dir_req_t *req);
void ngx_mail_plus_dir_cache_password(ngx_mail_plus_dir_req_t *req,
    ngx_uint_t right);
ngx_uint_t ngx_mail_plus_dir_cache_hmac(ngx_mail_plus_main_conf_t *mpcf,
    ngx_str_t *parts, ngx_uint_t n, u_char *out);
ngx_int_t ngx_mail_plus_dir_cache_file_get(ngx_mail_plus_main_conf_t *mpcf,
    ngx_uint_t protocol, ngx_str_t *login, ngx_str_t *hash,
    ngx_str_t *password, u_char *hmac, ngx_uint_t *len);
void ngx_mail_plus_dir_cache_file_put(ngx_mail_plus_main_conf_t *mpcf,
    ngx_uint_t protocol, ngx_str_t *login, u_char *hmac, ngx_log_t *log);


#endif /* _NGX_MAIL_PLUS_DIRECTORY_H_INCLUDED_ */
