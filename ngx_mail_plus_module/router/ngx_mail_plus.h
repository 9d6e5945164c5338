
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_H_INCLUDED_
#define _NGX_MAIL_PLUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif


/*
 * What every part uses of the router (router/): its configuration's types,
 * the question a part asks and the answer it gets, login checks, the
 * shared zone, session limits, backend health, SASL decoding, escaped
 * text and the date.  Each section below says which file provides it and
 * which parts use it.  What the router's files give each other only is in
 * ngx_mail_plus_router.h, private to router/.
 */


/*
 * The configuration of the router: protocols, pools and their servers,
 * users, rules, the main conf (ngx_mail_plus_module.c and the files it
 * reads with).  Read by every part; written by the router only, when the
 * configuration is read.
 */


/* the protocols a backend server may serve; order is that of "server" */

#define NGX_MAIL_PLUS_IMAP        0
#define NGX_MAIL_PLUS_POP3        1
#define NGX_MAIL_PLUS_SMTP        2
#define NGX_MAIL_PLUS_LMTP        3
#define NGX_MAIL_PLUS_NPROTOCOLS  4


/* a client's network: its family, then its address masked to the prefix */

#define NGX_MAIL_PLUS_CLIENT_KEY_LEN  17


/* servers in one pool, at most */

#define NGX_MAIL_PLUS_MAX_SERVERS  1024


/* who checks the password of a pool's users */

#define NGX_MAIL_PLUS_AUTH_ROUTER   0
#define NGX_MAIL_PLUS_AUTH_BACKEND  1


/* password schemes of the users file; NONE: empty, no password matches */

#define NGX_MAIL_PLUS_SCHEME_NONE     0
#define NGX_MAIL_PLUS_SCHEME_PLAIN    1
#define NGX_MAIL_PLUS_SCHEME_SHA      2
#define NGX_MAIL_PLUS_SCHEME_SSHA     3
#define NGX_MAIL_PLUS_SCHEME_CRYPT    4
#define NGX_MAIL_PLUS_SCHEME_SHA256   5
#define NGX_MAIL_PLUS_SCHEME_SHA512   6
#define NGX_MAIL_PLUS_SCHEME_SSHA256  7
#define NGX_MAIL_PLUS_SCHEME_SSHA512  8


/* how the module logs in to a pool's backends after a token login */

#define NGX_MAIL_PLUS_TOKEN_LOGIN_TOKEN   0   /* OAUTHBEARER, XOAUTH2 */
#define NGX_MAIL_PLUS_TOKEN_LOGIN_MASTER  1   /* "login*master", password */


/* how a pool's backends learn the client's address */

#define NGX_MAIL_PLUS_FORWARD_OFF     0
#define NGX_MAIL_PLUS_FORWARD_NATIVE  1   /* IMAP ID, POP3 XCLIENT */
#define NGX_MAIL_PLUS_FORWARD_PROXY   2   /* PROXY protocol v1 */
#define NGX_MAIL_PLUS_FORWARD_PROXY2  3   /* PROXY protocol v2 */
#define NGX_MAIL_PLUS_FORWARD_OFFERED 4   /* IMAP ID, POP3 XCLIENT if offered:
                                             the default with auth backend */


/* "router_directory" blocks, at most */

#define NGX_MAIL_PLUS_DIR_MAX       16


/* router answers */

#define NGX_MAIL_PLUS_ALLOW         0
#define NGX_MAIL_PLUS_DENY          1
#define NGX_MAIL_PLUS_TEMPFAIL      2


typedef struct ngx_mail_plus_pool_s  ngx_mail_plus_pool_t;
typedef struct ngx_mail_plus_token_conf_s  ngx_mail_plus_token_conf_t;


/* token logins' SASL mechanisms (ngx_mail_plus_sasl.c, token/) */

#define NGX_MAIL_PLUS_SASL_OAUTHBEARER  0x0002   /* RFC 7628 */
#define NGX_MAIL_PLUS_SASL_XOAUTH2      0x0004
#define NGX_MAIL_PLUS_SASL_TOKEN_OFF    0x0100   /* "router_token_auth off" */


/* the health of one backend address and port, in the shared zone */

typedef struct {
    ngx_atomic_t                down;
    ngx_uint_t                  fails;     /* in a row */
    ngx_uint_t                  passes;    /* in a row */
    ngx_msec_t                  checked;   /* last active check started */
    u_char                      name[NGX_SOCKADDR_STRLEN];
} ngx_mail_plus_health_t;


typedef struct {
    ngx_str_t                   name;      /* as written in "server" */
    ngx_str_t                   host;      /* IP literal, no port */
    ngx_addr_t                  addr;      /* port 0 */
    in_port_t                   port[NGX_MAIL_PLUS_NPROTOCOLS];
    ngx_uint_t                  weight;
    ngx_uint_t                  index;     /* in the pool */
    ngx_mail_plus_pool_t       *pool;
    ngx_mail_plus_health_t     *health[NGX_MAIL_PLUS_NPROTOCOLS];
    unsigned                    backup:1;
} ngx_mail_plus_server_t;


typedef struct {
    uint32_t                    hash;
    ngx_mail_plus_server_t     *server;
} ngx_mail_plus_point_t;


struct ngx_mail_plus_pool_s {
    ngx_str_t                   name;
    ngx_array_t                 servers;   /* ngx_mail_plus_server_t */
    ngx_mail_plus_point_t      *points;
    ngx_uint_t                  npoints;
    ngx_uint_t                  nprimary;
    ngx_uint_t                  auth;      /* NGX_MAIL_PLUS_AUTH_* */
    ngx_uint_t                  forward;   /* NGX_MAIL_PLUS_FORWARD_* */
    ngx_uint_t                  token_login;  /* NGX_MAIL_PLUS_TOKEN_LOGIN_* */
    ngx_str_t                   master_user;
    ngx_str_t                   master_password;  /* of its file; never
                                                     logged */

    u_char                     *file;
    ngx_uint_t                  line;
};


typedef struct {
    ngx_str_t                   login;     /* lower case */
    ngx_str_t                   password;  /* scheme prefix removed */
    ngx_uint_t                  scheme;    /* NGX_MAIL_PLUS_SCHEME_* */
    ngx_mail_plus_pool_t       *pool;      /* NULL: rules decide */
    ngx_mail_plus_server_t     *server;    /* NULL: the ring decides */

    /* Dovecot's extra fields: of a passwd-file line or a directory */

    ngx_str_t                   backend;   /* "user=", "destuser=": the login
                                              the backend knows; empty:
                                              the client's */
    ngx_str_t                   reason;    /* "reason=", with "nologin" */
    in_port_t                   port;      /* "port=": 0, the server's */
    unsigned                    nologin:1;    /* "nologin": refused */
    unsigned                    nopassword:1; /* "nopassword": the backend
                                                 checks the password */
    unsigned                    checked:1;    /* a directory checked the
                                                 password */
} ngx_mail_plus_user_t;


/*
 * A user's extra fields, by Dovecot's names (its passwd-file's last
 * field, its auth service's replies, a query's columns, an LDAP entry's
 * mapped attributes), as ngx_mail_plus_user_field() reads them; the
 * router makes them a user's target.
 */

typedef struct {
    ngx_str_t                   pool;      /* "pool": ours */
    ngx_str_t                   host;      /* "host" */
    ngx_str_t                   login;     /* "destuser", else "user" */
    ngx_str_t                   reason;    /* "reason" */
    in_port_t                   port;      /* "port" */
    unsigned                    nologin:1;     /* "nologin" */
    unsigned                    proxy:1;       /* "proxy", "proxy_maybe" */
    unsigned                    nopassword:1;  /* "nopassword" */
    unsigned                    destuser:1;    /* login is "destuser" */
} ngx_mail_plus_user_fields_t;


typedef struct {
    ngx_hash_t                  hash;      /* login -> ngx_mail_plus_user_t */
    ngx_uint_t                  nusers;
} ngx_mail_plus_users_t;


typedef struct {
    ngx_regex_t                *regex;
    ngx_str_t                   pattern;
    ngx_str_t                   pool;      /* may hold $1..$9 */
    ngx_str_t                   login;     /* may hold $1..$9; empty: keep */
    ngx_mail_plus_pool_t       *static_pool;
    ngx_uint_t                  captures;

    u_char                     *file;
    ngx_uint_t                  line;
} ngx_mail_plus_rule_t;


typedef struct {
    ngx_array_t                 pools;     /* ngx_mail_plus_pool_t * */
    ngx_array_t                 rules;     /* ngx_mail_plus_rule_t */

    ngx_str_t                   default_pool_name;
    ngx_mail_plus_pool_t       *default_pool;
    u_char                     *default_pool_file;
    ngx_uint_t                  default_pool_line;

    ngx_str_t                   users_file;
    ngx_mail_plus_users_t      *users;
    ngx_mail_plus_token_conf_t *token;     /* token/: "router_token_*" */
    ngx_array_t                *directories;  /* ngx_mail_plus_dir_t *, in
                                                 order (directory/) */
    time_t                      dir_valid;     /* a user found, cached */
    time_t                      dir_invalid;   /* an unknown user, cached */
    time_t                      dir_stale;     /* either, past its time,
                                                  while its source is down */
    u_char                     *users_conf_file;
    ngx_uint_t                  users_conf_line;

    ngx_uint_t                  hash_points;
    time_t                      auth_delay;

    ngx_shm_zone_t             *shm_zone;

    ngx_msec_t                  check_interval;
    ngx_msec_t                  check_timeout;
    ngx_uint_t                  check_fails;
    ngx_uint_t                  check_passes;
    ngx_flag_t                  check;

    ngx_uint_t                  login_fails;    /* before lockout */
    ngx_uint_t                  address_fails;
    time_t                      fail_window;
    time_t                      auth_max_delay;
    ngx_uint_t                  login_rate;     /* logins a minute */
    ngx_array_t                *trusted;        /* ngx_cidr_t */
    ngx_uint_t                  prefix4;        /* a client is its network */
    ngx_uint_t                  prefix6;

    ngx_str_t                   thread_pool_name;
#if (NGX_THREADS)
    ngx_thread_pool_t          *thread_pool;
#endif
} ngx_mail_plus_main_conf_t;


/*
 * One question to the router and its answer: asked by a login check
 * (below) or ngx_mail_plus_recipient(); read by proxy/, smtp/, delivery/,
 * http/.
 */


/* a "server" block's settings of the router: "router_token_auth" */

typedef struct {
    ngx_uint_t                  token_mechs;  /* NGX_MAIL_PLUS_SASL_* */
} ngx_mail_plus_srv_conf_t;


/* one question to the router */

typedef struct {
    ngx_uint_t                  protocol;  /* NGX_MAIL_PLUS_IMAP ... */
    ngx_str_t                   login;
    ngx_str_t                   password;
    ngx_str_t                   client;    /* client address, as text */
    ngx_uint_t                  method;    /* NGX_MAIL_AUTH_PLAIN, _APOP or
                                              _CRAM_MD5: then "password" is
                                              the client's digest of salt */
    ngx_str_t                   salt;      /* "<...>", no CRLF */
    ngx_str_t                   token;     /* a bearer token: "login" is the
                                              SASL user, if any */
    ngx_uint_t                  mech;      /* NGX_MAIL_PLUS_SASL_*, with
                                              a token */
    ngx_mail_plus_user_t       *user;      /* a directory's, if looked_up */
    unsigned                    check:1;   /* the password is to be checked */
    unsigned                    looked_up:1;  /* the directories answered:
                                                 "user" is theirs */
    unsigned                    recipient:1;  /* "nologin" does not apply */
} ngx_mail_plus_auth_t;


/* and its answer */

typedef struct {
    ngx_uint_t                  status;    /* NGX_MAIL_PLUS_ALLOW ... */
    ngx_mail_plus_user_t       *user;
    ngx_mail_plus_pool_t       *pool;
    ngx_mail_plus_server_t     *server;
    in_port_t                   port;
    ngx_uint_t                  protocol;
    uint64_t                    tried[NGX_MAIL_PLUS_MAX_SERVERS / 64];
    ngx_str_t                   key;       /* of the ring: login, lower case */
    ngx_str_t                   login;     /* as the backend knows it */
    ngx_str_t                   reason;    /* for the log */
    time_t                      delay;     /* before a refusal is sent */
    unsigned                    verify:1;  /* password still to verify */
    unsigned                    checked:1; /* a directory checked it */
    unsigned                    locked:1;  /* refused by throttling */
    unsigned                    token:1;   /* a token login: the backend
                                              login is the pool's
                                              "token_login" */
    unsigned                    bad_token:1;  /* refused: the token is not
                                                 valid (RFC 7628 status) */
} ngx_mail_plus_route_t;


/*
 * The shared zone (ngx_mail_plus_zone.c): health, throttling, session
 * counts, recipients' answers (smtp/), counters that every part adds to
 * and http/ shows.
 */

typedef struct {
    ngx_atomic_t                attempts;
    ngx_atomic_t                allowed;
    ngx_atomic_t                denied;
    ngx_atomic_t                locked;
    ngx_atomic_t                tempfail;
    ngx_atomic_t                queued;    /* accepted by SMTP into the queue */
    ngx_atomic_t                sent;      /* delivery attempts, a recipient */
    ngx_atomic_t                deferred;
    ngx_atomic_t                bounced;
    ngx_atomic_t                sessions[2];  /* proxied, NGX_MAIL_PLUS_IMAP */
    ngx_atomic_t                active[2];    /* and _POP3: started, open */
} ngx_mail_plus_stats_t;


/* a directory's counters and state, in the shared zone */

typedef struct {
    ngx_atomic_t                lookups;   /* questions to the source */
    ngx_atomic_t                hits;      /* answered by the cache */
    ngx_atomic_t                failures;  /* the source could not answer */
    ngx_atomic_t                stale;     /* a stale answer stood in */
    ngx_atomic_t                down;      /* 1: the source is unreachable */
} ngx_mail_plus_dir_stats_t;


typedef struct {
    ngx_rbtree_t                rbtree;    /* throttle entries */
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;     /* the same, most recent first */
    ngx_queue_t                 health;    /* ngx_mail_plus_health_link_t */
    ngx_rbtree_t                limits;    /* session counts */
    ngx_rbtree_node_t           limits_sentinel;
    ngx_mail_plus_stats_t       stats;
    time_t                      warned;    /* zone full, last logged */
    ngx_rbtree_t                verify;    /* recipients' answers */
    ngx_rbtree_node_t           verify_sentinel;
    ngx_queue_t                 verify_queue;  /* most recent first */
    ngx_rbtree_t                dir_tree;  /* directories' answers */
    ngx_rbtree_node_t           dir_sentinel;
    ngx_queue_t                 dir_queue;     /* most recent first */
    ngx_uint_t                  dir_entries;
    u_char                      dir_key[32];   /* of the passwords' HMACs */
    ngx_mail_plus_dir_stats_t   dirs[NGX_MAIL_PLUS_DIR_MAX];

    /* token introspection (token/ngx_mail_plus_token_introspect_cache.c) */
    ngx_rbtree_t                token_tree;    /* by the token's SHA-256 */
    ngx_rbtree_node_t           token_sentinel;
    ngx_queue_t                 token_queue;   /* most recent first */
    ngx_atomic_t                token_down;    /* the endpoint unreachable */
} ngx_mail_plus_shctx_t;


typedef struct {
    ngx_mail_plus_shctx_t      *sh;
    ngx_slab_pool_t            *shpool;
    ngx_mail_plus_main_conf_t  *mpcf;
} ngx_mail_plus_zone_t;


typedef struct ngx_mail_plus_check_s  ngx_mail_plus_check_t;

typedef void (*ngx_mail_plus_check_handler_pt)(ngx_mail_plus_check_t *check);


/*
 * a login check in progress (ngx_mail_plus_check.c): the router's answer,
 * the password checked in a thread pool if need be, throttling; started
 * by proxy/, smtp/ and http/
 */

struct ngx_mail_plus_check_s {
    ngx_pool_t                     *pool;      /* the check's own */
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_log_t                      *log;       /* the check's own */

    ngx_mail_plus_auth_t            auth;
    ngx_mail_plus_route_t           route;

    ngx_mail_plus_check_handler_pt  handler;   /* after NGX_AGAIN */
    void                           *data;

    ngx_int_t                       rc;        /* a recipient's: as
                                                  ngx_mail_plus_recipient() */
    void                           *crypt_data;
    void                           *dir;       /* a directory request */
    void                           *token;     /* a token request */
    ngx_uint_t                      hmac_len;  /* of a users file's crypt
                                                  check, for the cache */
    u_char                          hmac[32];

    unsigned                        pending:1;
    unsigned                        cancelled:1;
    unsigned                        router_only:1;  /* a password nobody
                                                       checks is refused */
    unsigned                        throttled:1;
    unsigned                        submission:1;
    unsigned                        recipient:1;
};


extern ngx_module_t  ngx_mail_module;
extern ngx_module_t  ngx_mail_plus_module;


/* login checks (ngx_mail_plus_check.c): proxy/, smtp/, http/ */

ngx_pool_t *ngx_mail_plus_own_pool(ngx_log_t *log, size_t size, void **obj);
ngx_mail_plus_check_t *ngx_mail_plus_check_create(
    ngx_mail_plus_main_conf_t *mpcf, ngx_log_t *log);
ngx_int_t ngx_mail_plus_check_set(ngx_mail_plus_check_t *check,
    ngx_uint_t protocol, ngx_str_t *login, ngx_str_t *password,
    ngx_str_t *client);
ngx_int_t ngx_mail_plus_check_set_digest(ngx_mail_plus_check_t *check,
    ngx_uint_t method, ngx_str_t *salt);
ngx_int_t ngx_mail_plus_check_set_submission(ngx_mail_plus_check_t *check,
    ngx_str_t *login, ngx_str_t *password, ngx_str_t *client);
ngx_int_t ngx_mail_plus_check_set_token(ngx_mail_plus_check_t *check,
    ngx_uint_t protocol, ngx_str_t *user, ngx_str_t *token, ngx_uint_t mech,
    ngx_str_t *client);
ngx_int_t ngx_mail_plus_check_set_recipient(ngx_mail_plus_check_t *check,
    ngx_str_t *addr);
ngx_int_t ngx_mail_plus_check_start(ngx_mail_plus_check_t *check);
void ngx_mail_plus_check_free(ngx_mail_plus_check_t *check);

/*
 * an extra field of a user, by Dovecot's name (ngx_mail_plus_users_parse.c):
 * directory/
 */

ngx_int_t ngx_mail_plus_user_field(ngx_mail_plus_user_fields_t *fields,
    ngx_str_t *key, ngx_str_t *value);

/*
 * the next server of a route after a failure (ngx_mail_plus_router.c):
 * proxy/
 */

ngx_int_t ngx_mail_plus_router_next(ngx_mail_plus_route_t *route);

/* a recipient's route (ngx_mail_plus_recipient.c): smtp/, delivery/ */

ngx_int_t ngx_mail_plus_recipient(ngx_mail_plus_main_conf_t *mpcf,
    ngx_str_t *addr, ngx_mail_plus_route_t *route, ngx_pool_t *pool,
    ngx_log_t *log);

/*
 * the local part of a recipient in a local domain, as the router reads
 * it (addr is the path inside <>, its domain after the last "@"):
 * NGX_DECLINED if it holds an "@", "%" or "!", quoted or not, or a
 * control byte.  A mailbox server or the MTA behind it may read "a%b",
 * "b!a" or "a@b" before the domain as a route to another address or
 * another host; no user has such a name, so the address is refused
 * before it can be passed on.  Inline: the SMTP parser's fuzz target
 * checks it without the router.
 */

static ngx_inline ngx_int_t
ngx_mail_plus_recipient_local_part(ngx_str_t *addr)
{
    u_char  *p, *last;

    last = addr->data + addr->len;

    for (p = last; p > addr->data; p--) {
        if (p[-1] == '@') {
            last = p - 1;
            break;
        }
    }

    for (p = addr->data; p < last; p++) {
        if (*p == '@' || *p == '%' || *p == '!' || *p < 0x20 || *p == 0x7f) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* the shared zone (ngx_mail_plus_zone.c): every part; http/ */

void ngx_mail_plus_dir_cache_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);

ngx_mail_plus_stats_t *ngx_mail_plus_zone_stats(void);
ngx_uint_t ngx_mail_plus_zone_throttle_entries(ngx_mail_plus_zone_t *zone);

/*
 * a client's network as throttling and session limits count it
 * (ngx_mail_plus_throttle.c): proxy/, smtp/
 */

size_t ngx_mail_plus_client_key(ngx_mail_plus_main_conf_t *mpcf,
    struct sockaddr *sa, u_char *buf);

/* a directive's networks (ngx_mail_plus_module.c): smtp/ */

char *ngx_mail_plus_conf_networks(ngx_conf_t *cf, ngx_array_t **networks);

/* concurrent sessions per key (ngx_mail_plus_limit.c): proxy/, smtp/ */

ngx_int_t ngx_mail_plus_limit_acquire(ngx_str_t *key, ngx_uint_t limit,
    ngx_log_t *log);
void ngx_mail_plus_limit_release(ngx_str_t *key);

/*
 * backend health (ngx_mail_plus_health.c): a failure or a success in use,
 * proxy/, delivery/
 */

void ngx_mail_plus_health_report(ngx_mail_plus_server_t *server,
    ngx_uint_t protocol, ngx_uint_t ok, ngx_log_t *log);

/*
 * SASL responses (ngx_mail_plus_sasl.c): proxy/, smtp/.  Decoded in place:
 * NGX_OK, or NGX_DECLINED for bad base64 or a bad shape (IMAP BAD, POP3
 * -ERR, SMTP 501), or NGX_ABORT for a PLAIN authzid that is not the login
 */

ngx_int_t ngx_mail_plus_sasl_decode(ngx_str_t *text);
ngx_int_t ngx_mail_plus_sasl_plain(ngx_str_t *response, ngx_str_t *login,
    ngx_str_t *password);
ngx_int_t ngx_mail_plus_sasl_login(ngx_str_t *response, ngx_str_t *value);
ngx_int_t ngx_mail_plus_sasl_cram_md5(ngx_str_t *response, ngx_str_t *login,
    ngx_str_t *digest);

/*
 * token mechanisms (ngx_mail_plus_sasl_token.c): the user (empty if not
 * given) and the bearer token, NGX_OK or NGX_DECLINED
 */

ngx_int_t ngx_mail_plus_sasl_oauthbearer(ngx_str_t *response, ngx_str_t *user,
    ngx_str_t *token);
ngx_int_t ngx_mail_plus_sasl_xoauth2(ngx_str_t *response, ngx_str_t *user,
    ngx_str_t *token);

/*
 * client text in log lines, escaped, and the RFC 5322 date
 * (ngx_mail_plus_text.c): every part
 */

ngx_uint_t ngx_mail_plus_text_has_ctl(ngx_str_t *s);
ngx_int_t ngx_mail_plus_text_log(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);
u_char *ngx_mail_plus_text_log_write(u_char *p, u_char *last,
    ngx_str_t *src);
u_char *ngx_mail_plus_date(u_char *p, time_t t);

#define NGX_MAIL_PLUS_DATE_LEN  (sizeof("Mon, 28 Sep 1970 06:00:00 +0000") - 1)


/*
 * the main configuration of one of our mail modules in a cycle, NULL when
 * the cycle has no mail block: every part, where it has no session
 */

#define ngx_mail_plus_cycle_get_main_conf(cycle, module)                      \
    (ngx_get_conf((cycle)->conf_ctx, ngx_mail_module) == NULL ? NULL :        \
        ((ngx_mail_conf_ctx_t *) ngx_get_conf((cycle)->conf_ctx,              \
                                              ngx_mail_module))               \
            ->main_conf[(module).ctx_index])

#define ngx_mail_plus_get_main_conf(cycle)                                    \
    ((ngx_mail_plus_main_conf_t *)                                            \
        ngx_mail_plus_cycle_get_main_conf(cycle, ngx_mail_plus_module))


#endif /* _NGX_MAIL_PLUS_H_INCLUDED_ */
