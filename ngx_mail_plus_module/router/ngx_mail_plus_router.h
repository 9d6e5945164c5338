
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_ROUTER_H_INCLUDED_
#define _NGX_MAIL_PLUS_ROUTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"


/*
 * Private to router/: what the router's files give each other to read the
 * configuration (the users file, pools and their rings, rules, the zone)
 * and to answer a question (the lookups, throttling).  The other parts use
 * the router through ngx_mail_plus.h only; the users_file fuzz target
 * includes this header for the users file's line parser.
 */


/* a throttling key: its type, then a login or an address */

#define NGX_MAIL_PLUS_KEY_LEN      260


/* the users file (ngx_mail_plus_users.c, ngx_mail_plus_users_parse.c) */

char *ngx_mail_plus_users_load(ngx_conf_t *cf,
    ngx_mail_plus_main_conf_t *mpcf);
ngx_int_t ngx_mail_plus_users_parse_line(ngx_pool_t *pool, u_char *start,
    u_char *end, ngx_mail_plus_user_t *user, ngx_str_t *target,
    ngx_mail_plus_user_fields_t *fields, char **err);
ngx_mail_plus_user_t *ngx_mail_plus_users_find(ngx_mail_plus_users_t *users,
    ngx_str_t *login);
ngx_int_t ngx_mail_plus_users_password(ngx_pool_t *pool,
    ngx_mail_plus_user_t *user, ngx_str_t *value, char **err);
ngx_int_t ngx_mail_plus_users_fields(ngx_mail_plus_main_conf_t *mpcf,
    ngx_pool_t *pool, ngx_mail_plus_user_t *user,
    ngx_mail_plus_user_fields_t *fields, char **err);
ngx_int_t ngx_mail_plus_password_check(ngx_mail_plus_user_t *user,
    ngx_str_t *password, ngx_pool_t *pool, void *crypt_data);
ngx_int_t ngx_mail_plus_password_digest(ngx_mail_plus_user_t *user,
    ngx_mail_plus_auth_t *auth, ngx_pool_t *pool);
size_t ngx_mail_plus_password_crypt_size(void);

/* pools and the hash ring (ngx_mail_plus_pool.c) */

char *ngx_mail_plus_pool_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_mail_plus_pool_t *ngx_mail_plus_pool_find(ngx_mail_plus_main_conf_t *mpcf,
    ngx_str_t *name);
ngx_mail_plus_server_t *ngx_mail_plus_pool_find_server(
    ngx_mail_plus_main_conf_t *mpcf, ngx_str_t *host);
ngx_int_t ngx_mail_plus_pool_init_ring(ngx_conf_t *cf,
    ngx_mail_plus_pool_t *pool, ngx_uint_t points);
ngx_mail_plus_server_t *ngx_mail_plus_pool_get_server(
    ngx_mail_plus_pool_t *pool, ngx_str_t *key, ngx_uint_t protocol,
    uint64_t *tried);
ngx_uint_t ngx_mail_plus_server_usable(ngx_mail_plus_server_t *server,
    ngx_uint_t protocol);

/* rules and routing (ngx_mail_plus_router.c) */

char *ngx_mail_plus_router_rule(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_mail_plus_router_init(ngx_conf_t *cf,
    ngx_mail_plus_main_conf_t *mpcf);
ngx_int_t ngx_mail_plus_router_route(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_auth_t *auth, ngx_mail_plus_route_t *route,
    ngx_pool_t *pool, ngx_log_t *log);
void ngx_mail_plus_router_verified(ngx_mail_plus_route_t *route,
    ngx_int_t rc, ngx_log_t *log);

/* a recipient whose user a directory gave (ngx_mail_plus_recipient.c) */

ngx_int_t ngx_mail_plus_recipient_user(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_auth_t *auth, ngx_mail_plus_route_t *route,
    ngx_pool_t *pool, ngx_log_t *log);

/* the shared zone (ngx_mail_plus_zone.c) and its health checks */

char *ngx_mail_plus_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_mail_plus_health_init_process(ngx_cycle_t *cycle,
    ngx_mail_plus_main_conf_t *mpcf);

/*
 * throttling of logins (ngx_mail_plus_throttle.c), around a check, and
 * "router_client_prefix"
 */

void ngx_mail_plus_throttle_before(ngx_mail_plus_check_t *check);
void ngx_mail_plus_throttle_after(ngx_mail_plus_check_t *check);
ngx_int_t ngx_mail_plus_throttle_expire(ngx_mail_plus_zone_t *zone,
    ngx_uint_t n, ngx_uint_t force);
char *ngx_mail_plus_client_prefix(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_MAIL_PLUS_ROUTER_H_INCLUDED_ */
