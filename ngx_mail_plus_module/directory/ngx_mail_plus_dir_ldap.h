
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_DIR_LDAP_H_INCLUDED_
#define _NGX_MAIL_PLUS_DIR_LDAP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include "ngx_mail_plus_directory.h"


/*
 * The LDAP source ("router_directory ldap"): its configuration
 * (ngx_mail_plus_dir_ldap_conf.c), its connections and requests
 * (ngx_mail_plus_dir_ldap.c), the reading of its replies
 * (ngx_mail_plus_dir_ldap_reply.c).
 */


#if (NGX_MAIL_PLUS_LDAP)

#include <ldap.h>


#define NGX_MAIL_PLUS_LDAP_BIND      0   /* as bind_dn, or anonymous */
#define NGX_MAIL_PLUS_LDAP_SEARCH    1
#define NGX_MAIL_PLUS_LDAP_USER      2   /* as the entry found */


typedef struct {
    ngx_str_t                       name;     /* ours: "pool", "host" ... */
    char                           *attr;
} ngx_mail_plus_dir_ldap_field_t;


typedef struct {
    char                           *url;
    char                           *bind_dn;
    struct berval                   bind_pw;
    char                           *base;
    int                             scope;
    ngx_str_t                       filter;
    ngx_str_t                       recipient_filter;
    char                           *password;  /* the attribute; NULL:
                                                  "password bind" */
    ngx_array_t                     fields;    /* of ..._ldap_field_t */
    char                          **attrs;     /* of a login's entry */
    char                          **rcpt_attrs;  /* of a recipient's */
} ngx_mail_plus_dir_ldap_conf_t;


typedef struct ngx_mail_plus_dir_ldap_ctx_s  ngx_mail_plus_dir_ldap_ctx_t;


typedef struct {
    LDAP                           *ld;
    ngx_connection_t               *c;
    ngx_mail_plus_dir_ldap_ctx_t   *ctx;
    ngx_mail_plus_dir_req_t        *req;
    int                             msgid;
    ngx_uint_t                      step;
    ngx_uint_t                      index;
    unsigned                        connecting:1;
    unsigned                        bound:1;   /* as bind_dn, or anonymous */
    unsigned                        reused:1;  /* opened for an earlier
                                                  request */
    unsigned                        answered:1;  /* the server answered
                                                    this request */
} ngx_mail_plus_dir_ldap_conn_t;


struct ngx_mail_plus_dir_ldap_ctx_s {
    ngx_mail_plus_dir_t            *dir;
    ngx_mail_plus_dir_ldap_conf_t  *conf;
    ngx_mail_plus_dir_ldap_conn_t  *conns;
    ngx_queue_t                     waiting;
    ngx_uint_t                      nwaiting;
    ngx_event_t                     next;
    ngx_log_t                      *log;
};


/* a request's, while the source works on it */

typedef struct {
    char                           *filter;
    char                           *dn;
    ngx_msec_t                      queued;
    unsigned                        retried:1;
} ngx_mail_plus_dir_ldap_req_t;


ngx_int_t ngx_mail_plus_dir_ldap_send(ngx_mail_plus_dir_ldap_conn_t *lc,
    ngx_uint_t step);
ngx_int_t ngx_mail_plus_dir_ldap_result(ngx_mail_plus_dir_ldap_conn_t *lc,
    LDAPMessage *res);
ngx_int_t ngx_mail_plus_dir_ldap_fail(ngx_mail_plus_dir_ldap_conn_t *lc,
    char *what, int code);

#endif


char *ngx_mail_plus_dir_ldap_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir);


/*
 * The LDAP source's search filters (ngx_mail_plus_dir_ldap_filter.c): a
 * template as configured, checked once, and the filter of a login, with
 * the login escaped as RFC 4515 requires where the template says "%u".
 */


/* NULL if the template can be used, else why not */
char *ngx_mail_plus_dir_ldap_filter_check(ngx_str_t *tpl);

/* the length of the filter of a login, and the filter itself */
size_t ngx_mail_plus_dir_ldap_filter_len(ngx_str_t *tpl, ngx_str_t *login);
u_char *ngx_mail_plus_dir_ldap_filter(u_char *dst, ngx_str_t *tpl,
    ngx_str_t *login);


#endif /* _NGX_MAIL_PLUS_DIR_LDAP_H_INCLUDED_ */
