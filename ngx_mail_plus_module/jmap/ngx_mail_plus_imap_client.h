
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_IMAP_CLIENT_H_INCLUDED_
#define _NGX_MAIL_PLUS_IMAP_CLIENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include "ngx_mail_plus_imap_parse.h"


/*
 * The asynchronous IMAP client of the JMAP endpoint
 * (ngx_mail_plus_imap_client.c), in nginx's event loop.
 *
 * A user's session with a backend: opened for a JMAP request with the
 * route the router gave and the backend login, it connects (failing over
 * to the next server of the ring, as the proxy does), reads the greeting,
 * asks CAPABILITY, logs in (LOGIN with the user's password; after a token
 * login the pool's "token_login": the token with AUTHENTICATE, or the
 * master user), and ENABLEs CONDSTORE and QRESYNC where offered.
 * Commands may be queued at once: they are sent, in order, once the
 * session is ready, and each one's handler is called once, from an event,
 * when its tagged answer has arrived or the session has failed.
 *
 * When the request is done with it the session is released: a session
 * that is logged in, idle and healthy is kept, per worker, for
 * "mail_plus_jmap_imap_keepalive_timeout", and the next request of the
 * same user to the same server and port takes it (no new connection, no
 * login).  At most "mail_plus_jmap_imap_keepalive" sessions are kept in
 * a worker; the oldest goes first.  A kept session whose backend closes
 * or says BYE is dropped.
 *
 * Every step (connect, greeting, login, each command) has the timeout
 * "mail_plus_jmap_imap_timeout"; on a timeout the connection is closed and
 * every queued command fails.  What the backend sends is read with the
 * reader of ngx_mail_plus_imap_parse.h, with the limits of the
 * configuration; a response over them fails the session.
 */


typedef struct ngx_mail_plus_imap_s      ngx_mail_plus_imap_t;
typedef struct ngx_mail_plus_imap_cmd_s  ngx_mail_plus_imap_cmd_t;

typedef void (*ngx_mail_plus_imap_handler_pt)(ngx_mail_plus_imap_cmd_t *cmd);

/*
 * called from an event when the command is the next to go and the session
 * is ready (what the backend offers is known: imap->list_status...), to
 * add its text then; NGX_ERROR fails the session
 */

typedef ngx_int_t (*ngx_mail_plus_imap_prepare_pt)(
    ngx_mail_plus_imap_cmd_t *cmd);

/*
 * an untagged response while the command runs: NGX_OK (taken: it is not
 * collected), NGX_DECLINED (collect it in cmd->untagged), NGX_ERROR (fail
 * the session)
 */

typedef ngx_int_t (*ngx_mail_plus_imap_untagged_pt)(
    ngx_mail_plus_imap_cmd_t *cmd, ngx_mail_plus_imap_response_t *resp);


/* the settings (a JMAP location's, or whatever configures a client) */

typedef struct {
    ngx_msec_t                        timeout;          /* every step */
    ngx_msec_t                        keepalive_timeout;
    ngx_uint_t                        keepalive;        /* sessions kept */
    ngx_mail_plus_imap_limits_t       limits;           /* of a response */
} ngx_mail_plus_imap_conf_t;


/* whom to open a session for */

typedef struct {
    void                             *route;     /* ngx_mail_plus_route_t:
                                                    pool, server, port, key;
                                                    the server and port
                                                    change on failover */
    ngx_str_t                         login;     /* the backend's login */
    ngx_str_t                         secret;    /* password, or token */
    unsigned                          token:1;   /* secret is a token */
    ngx_log_t                        *log;
} ngx_mail_plus_imap_target_t;


struct ngx_mail_plus_imap_cmd_s {
    ngx_mail_plus_imap_t             *imap;

    /*
     * set by the caller before ngx_mail_plus_imap_send(); the text is
     * what follows the tag, without CRLF, built with the functions below
     */
    ngx_pool_t                       *pool;      /* the command's text and
                                                    its responses' values;
                                                    the caller's, alive
                                                    until the handler */
    ngx_mail_plus_imap_handler_pt     handler;
    ngx_mail_plus_imap_untagged_pt    untagged_handler;  /* or NULL */
    ngx_mail_plus_imap_prepare_pt     prepare;   /* or NULL */
    void                             *data;

    /* the answer, for the handler */
    ngx_int_t                         rc;        /* NGX_OK: a tagged answer
                                                    came; NGX_ERROR: the
                                                    session failed */
    ngx_mail_plus_imap_status_e       status;    /* OK, NO or BAD */
    ngx_mail_plus_imap_value_t       *code;      /* its code, or NULL */
    ngx_str_t                         text;
    ngx_array_t                       untagged;  /* of ngx_mail_plus_imap_
                                                    response_t *, the ones
                                                    not taken */

    /* the client's own */
    ngx_array_t                       parts;     /* of the text */
    ngx_mail_plus_imap_cmd_t         *next;
    ngx_uint_t                        tag;
    ngx_str_t                         mailbox;   /* SELECT's, UTF-8 */
    unsigned                          internal:1;  /* the login's */
    unsigned                          auth:1;    /* AUTHENTICATE */
    unsigned                          select:1;  /* SELECT, EXAMINE */
    unsigned                          examine:1;
    unsigned                          unselect:1;  /* CLOSE, UNSELECT */
};


struct ngx_mail_plus_imap_s {
    ngx_log_t                        *log;
    const char                       *error;     /* why it failed: a fixed
                                                    text, safe to log and
                                                    to show a client */

    /* what the backend offers: set once ready */
    unsigned                          literal_plus:1;  /* LITERAL+, or
                                                          LITERAL- */
    unsigned                          condstore:1;     /* enabled */
    unsigned                          qresync:1;       /* enabled */
    unsigned                          special_use:1;
    unsigned                          binary:1;
    unsigned                          move:1;
    unsigned                          uidplus:1;
    unsigned                          esearch:1;
    unsigned                          list_status:1;
    unsigned                          utf8:1;          /* UTF8=ACCEPT,
                                                          enabled */

    /* the mailbox selected, as the last SELECT or EXAMINE left it */
    ngx_str_t                         selected;  /* empty: none */
    unsigned                          read_only:1;
    uint64_t                          uidvalidity;
    uint64_t                          uidnext;
    uint64_t                          highestmodseq;
    uint64_t                          exists;

    /* the caller's, kept with the session between requests (the JMAP
       part's last query): one ngx_alloc()ed block, ngx_free()d when the
       session closes */
    void                             *kept;
    void                             *ahead;    /* the same, for a page
                                                   read ahead */

    /* the client's own: the connection, the queue, the parser */
    void                             *priv;
};


/*
 * a session for the target: NULL only without memory; a failure to
 * connect or log in shows as every queued command failing (rc NGX_ERROR,
 * imap->error)
 */

ngx_mail_plus_imap_t *ngx_mail_plus_imap_open(ngx_mail_plus_imap_conf_t *conf,
    ngx_mail_plus_imap_target_t *target);

/*
 * the request is done with it: kept for the next request if it is ready,
 * idle and unbroken and keep is set, else closed; no handler is called
 * after this (queued commands are dropped)
 */

void ngx_mail_plus_imap_release(ngx_mail_plus_imap_t *imap, ngx_uint_t keep);


/* a command: start it, add its text, queue it */

ngx_mail_plus_imap_cmd_t *ngx_mail_plus_imap_cmd(ngx_mail_plus_imap_t *imap,
    ngx_pool_t *pool);

/* words of the command as they are ("UID FETCH 1:* (FLAGS)"): checked to
   hold no CR, LF or NUL, else NGX_ERROR */
ngx_int_t ngx_mail_plus_imap_cmd_text(ngx_mail_plus_imap_cmd_t *cmd,
    const char *fmt, ...);

/* an astring: an atom if it can be, else quoted, else a literal (LITERAL+
   where offered, else synchronizing); NUL refused (NGX_DECLINED) */
ngx_int_t ngx_mail_plus_imap_cmd_string(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_str_t *s);

/* a mailbox name in UTF-8: modified UTF-7 (RFC 3501, 5.1.3) unless UTF8
   is enabled, then as an astring; NGX_DECLINED for a name that is not
   UTF-8 or holds a control character */
ngx_int_t ngx_mail_plus_imap_cmd_mailbox(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_str_t *name);

/* a literal of any bytes (APPEND's message) */
ngx_int_t ngx_mail_plus_imap_cmd_literal(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_str_t *data);

/* queue it: NGX_OK (its handler is called later, once), NGX_ERROR */
ngx_int_t ngx_mail_plus_imap_send(ngx_mail_plus_imap_cmd_t *cmd);


/* mailbox names from the backend: modified UTF-7 to UTF-8 (or as they
   are under UTF8=ACCEPT); NGX_DECLINED for a bad encoding */
ngx_int_t ngx_mail_plus_imap_mailbox_name(ngx_mail_plus_imap_t *imap,
    ngx_pool_t *pool, ngx_str_t *name, ngx_str_t *utf8);


/*
 * modified UTF-7 (ngx_mail_plus_imap_utf7.c), strict both ways: NGX_OK,
 * NGX_DECLINED (not valid, or a control character), NGX_ERROR (memory)
 */

ngx_int_t ngx_mail_plus_imap_utf7_decode(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);
ngx_int_t ngx_mail_plus_imap_utf7_encode(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);
ngx_int_t ngx_mail_plus_imap_utf8_valid(ngx_str_t *s);


#endif /* _NGX_MAIL_PLUS_IMAP_CLIENT_H_INCLUDED_ */
