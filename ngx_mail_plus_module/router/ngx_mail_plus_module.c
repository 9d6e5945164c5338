
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_token.h"


/*
 * The router's module: the router_* directives and the main configuration
 * they fill (pools, rules, the users file, the zone and the client's
 * network are read by their own files), the networks of
 * "router_trusted_networks", and the health checks each worker starts.
 */


static void *ngx_mail_plus_create_main_conf(ngx_conf_t *cf);
static char *ngx_mail_plus_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_mail_plus_create_srv_conf(ngx_conf_t *cf);
static char *ngx_mail_plus_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_mail_plus_set_where(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_mail_plus_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_mail_plus_trusted(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_mail_plus_init_process(ngx_cycle_t *cycle);
static void ngx_mail_plus_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_mail_plus_hash_points_bounds = {
    ngx_conf_check_num_bounds, 1, 10000
};


static ngx_conf_bitmask_t  ngx_mail_plus_token_mechs[] = {
    { ngx_string("oauthbearer"), NGX_MAIL_PLUS_SASL_OAUTHBEARER },
    { ngx_string("xoauth2"), NGX_MAIL_PLUS_SASL_XOAUTH2 },
    { ngx_string("off"), NGX_MAIL_PLUS_SASL_TOKEN_OFF },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_mail_plus_commands[] = {

    { ngx_string("router_token_auth"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_srv_conf_t, token_mechs),
      &ngx_mail_plus_token_mechs },

    { ngx_string("router_users"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_mail_plus_set_where,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, users_file),
      NULL },

    { ngx_string("router_directory"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE12,
      ngx_mail_plus_dir_block,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_directory_valid"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, dir_valid),
      NULL },

    { ngx_string("router_directory_invalid"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, dir_invalid),
      NULL },

    { ngx_string("router_directory_stale"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, dir_stale),
      NULL },

    { ngx_string("router_pool"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_mail_plus_pool_block,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_rule"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_mail_plus_router_rule,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_default_pool"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_mail_plus_set_where,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, default_pool_name),
      NULL },

    { ngx_string("router_hash_points"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, hash_points),
      &ngx_mail_plus_hash_points_bounds },

    { ngx_string("router_auth_delay"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, auth_delay),
      NULL },

    { ngx_string("router_zone"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_mail_plus_zone,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_health_check"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_1MORE,
      ngx_mail_plus_health_check,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_login_fails"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, login_fails),
      NULL },

    { ngx_string("router_address_fails"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, address_fails),
      NULL },

    { ngx_string("router_fail_window"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, fail_window),
      NULL },

    { ngx_string("router_auth_max_delay"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, auth_max_delay),
      NULL },

    { ngx_string("router_login_rate"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, login_rate),
      NULL },

    { ngx_string("router_trusted_networks"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_1MORE,
      ngx_mail_plus_trusted,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_client_prefix"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_mail_plus_client_prefix,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("router_thread_pool"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_main_conf_t, thread_pool_name),
      NULL },

      ngx_null_command
};


static ngx_mail_module_t  ngx_mail_plus_module_ctx = {
    NULL,                                  /* protocol */

    ngx_mail_plus_create_main_conf,        /* create main configuration */
    ngx_mail_plus_init_main_conf,          /* init main configuration */

    ngx_mail_plus_create_srv_conf,         /* create server configuration */
    ngx_mail_plus_merge_srv_conf           /* merge server configuration */
};


ngx_module_t  ngx_mail_plus_module = {
    NGX_MODULE_V1,
    &ngx_mail_plus_module_ctx,             /* module context */
    ngx_mail_plus_commands,                /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_mail_plus_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_mail_plus_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_mail_plus_create_main_conf(ngx_conf_t *cf)
{
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_main_conf_t));
    if (mpcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mpcf->users_file = { 0, NULL };
     *     mpcf->default_pool_name = { 0, NULL };
     *     mpcf->default_pool = NULL;
     *     mpcf->users = NULL;
     *     mpcf->thread_pool_name = { 0, NULL };
     *     mpcf->shm_zone = NULL;
     *     mpcf->trusted = NULL;
     */

    if (ngx_array_init(&mpcf->pools, cf->pool, 4,
                       sizeof(ngx_mail_plus_pool_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&mpcf->rules, cf->pool, 4,
                       sizeof(ngx_mail_plus_rule_t))
        != NGX_OK)
    {
        return NULL;
    }

    mpcf->hash_points = NGX_CONF_UNSET_UINT;
    mpcf->auth_delay = NGX_CONF_UNSET;

    mpcf->dir_valid = NGX_CONF_UNSET;
    mpcf->dir_invalid = NGX_CONF_UNSET;
    mpcf->dir_stale = NGX_CONF_UNSET;

    mpcf->check = NGX_CONF_UNSET;
    mpcf->check_interval = NGX_CONF_UNSET_MSEC;
    mpcf->check_timeout = NGX_CONF_UNSET_MSEC;
    mpcf->check_fails = NGX_CONF_UNSET_UINT;
    mpcf->check_passes = NGX_CONF_UNSET_UINT;

    mpcf->login_fails = NGX_CONF_UNSET_UINT;
    mpcf->address_fails = NGX_CONF_UNSET_UINT;
    mpcf->fail_window = NGX_CONF_UNSET;
    mpcf->auth_max_delay = NGX_CONF_UNSET;
    mpcf->login_rate = NGX_CONF_UNSET_UINT;

    mpcf->prefix4 = NGX_CONF_UNSET_UINT;
    mpcf->prefix6 = NGX_CONF_UNSET_UINT;

    return mpcf;
}


static void *
ngx_mail_plus_create_srv_conf(ngx_conf_t *cf)
{
    ngx_mail_plus_srv_conf_t  *pscf;

    pscf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_srv_conf_t));
    if (pscf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pscf->token_mechs = 0;
     */

    return pscf;
}


/* token mechanisms are offered only where configured, and checkable */

static char *
ngx_mail_plus_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_mail_plus_srv_conf_t *prev = parent;
    ngx_mail_plus_srv_conf_t *conf = child;

    ngx_mail_plus_token_conf_t  *tcf;

    ngx_conf_merge_bitmask_value(conf->token_mechs, prev->token_mechs,
                                 (NGX_CONF_BITMASK_SET
                                  |NGX_MAIL_PLUS_SASL_TOKEN_OFF));

    if (conf->token_mechs & NGX_MAIL_PLUS_SASL_TOKEN_OFF) {
        conf->token_mechs = 0;
    }

    conf->token_mechs &= (NGX_MAIL_PLUS_SASL_OAUTHBEARER
                          |NGX_MAIL_PLUS_SASL_XOAUTH2);

    /* the token module's directives are read: its verifier is known */

    tcf = ngx_mail_conf_get_module_main_conf(cf, ngx_mail_plus_token_module);

    if (conf->token_mechs && tcf->verifier == NGX_MAIL_PLUS_TOKEN_NONE)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"router_token_auth\" needs a token verifier: "
                           "\"router_token_jwks\", "
                           "\"router_token_introspect\" or "
                           "\"router_token_dovecot\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_mail_plus_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_mail_plus_main_conf_t *mpcf = conf;

    ngx_conf_init_uint_value(mpcf->hash_points, 1000);
    ngx_conf_init_value(mpcf->auth_delay, 1);

    ngx_conf_init_value(mpcf->dir_valid, 300);
    ngx_conf_init_value(mpcf->dir_invalid, 60);
    ngx_conf_init_value(mpcf->dir_stale, 0);

    ngx_conf_init_value(mpcf->check, 1);
    ngx_conf_init_msec_value(mpcf->check_interval, 5000);
    ngx_conf_init_msec_value(mpcf->check_timeout, 3000);
    ngx_conf_init_uint_value(mpcf->check_fails, 1);
    ngx_conf_init_uint_value(mpcf->check_passes, 1);

    ngx_conf_init_uint_value(mpcf->login_fails, 5);
    ngx_conf_init_uint_value(mpcf->address_fails, 20);
    ngx_conf_init_value(mpcf->fail_window, 600);
    ngx_conf_init_value(mpcf->auth_max_delay, 30);
    ngx_conf_init_uint_value(mpcf->login_rate, 0);

    ngx_conf_init_uint_value(mpcf->prefix4, 32);
    ngx_conf_init_uint_value(mpcf->prefix6, 64);

#if (NGX_THREADS)

    if (mpcf->pools.nelts) {
        mpcf->thread_pool = ngx_thread_pool_add(cf,
                                                mpcf->thread_pool_name.len
                                                ? &mpcf->thread_pool_name
                                                : NULL);
        if (mpcf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }

#else

    if (mpcf->thread_pool_name.len) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"router_thread_pool\" needs nginx built with threads");
        return NGX_CONF_ERROR;
    }

#endif

    return ngx_mail_plus_router_init(cf, mpcf);
}


/*
 * a string directive whose value is checked only when the whole mail{}
 * block is read: it keeps where it was set, for the error messages
 */

static char *
ngx_mail_plus_set_where(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_main_conf_t *mpcf = conf;

    char  *rv;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (cmd->offset == offsetof(ngx_mail_plus_main_conf_t, users_file)) {
        mpcf->users_conf_file = cf->conf_file->file.name.data;
        mpcf->users_conf_line = cf->conf_file->line;

    } else {
        mpcf->default_pool_file = cf->conf_file->file.name.data;
        mpcf->default_pool_line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


static char *
ngx_mail_plus_health_check(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_main_conf_t *mpcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_msec_t   ms;
    ngx_uint_t   i;

    if (mpcf->check != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        mpcf->check = 0;
        return NGX_CONF_OK;
    }

    mpcf->check = 1;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "interval=", 9) == 0
            || ngx_strncmp(value[i].data, "timeout=", 8) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            ms = ngx_parse_time(&s, 0);
            if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
                goto invalid;
            }

            if (value[i].data[0] == 'i') {
                mpcf->check_interval = ms;

            } else {
                mpcf->check_timeout = ms;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "fails=", 6) == 0
            || ngx_strncmp(value[i].data, "passes=", 7) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_atoi(s.data, s.len);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            if (value[i].data[0] == 'f') {
                mpcf->check_fails = n;

            } else {
                mpcf->check_passes = n;
            }

            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_mail_plus_trusted(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_main_conf_t *mpcf = conf;

    return ngx_mail_plus_conf_networks(cf, &mpcf->trusted);
}


/* the networks of a directive's arguments, added to a list of ngx_cidr_t */

char *
ngx_mail_plus_conf_networks(ngx_conf_t *cf, ngx_array_t **networks)
{
    ngx_int_t    rc;
    ngx_str_t   *value;
    ngx_uint_t   i;
    ngx_cidr_t  *cidr;

    value = cf->args->elts;

    if (*networks == NULL || *networks == NGX_CONF_UNSET_PTR) {
        *networks = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                     sizeof(ngx_cidr_t));
        if (*networks == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    for (i = 1; i < cf->args->nelts; i++) {

        cidr = ngx_array_push(*networks);
        if (cidr == NULL) {
            return NGX_CONF_ERROR;
        }

        rc = ngx_ptocidr(&value[i], cidr);

        if (rc == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid network \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DONE) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "low address bits of %V are meaningless",
                               &value[i]);
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_mail_plus_init_process(ngx_cycle_t *cycle)
{
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_plus_get_main_conf(cycle);

    if (mpcf == NULL) {
        return NGX_OK;
    }

    if (ngx_mail_plus_dir_init_process(cycle, mpcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (mpcf->shm_zone == NULL || !mpcf->check) {
        return NGX_OK;
    }

    return ngx_mail_plus_health_init_process(cycle, mpcf);
}


static void
ngx_mail_plus_exit_process(ngx_cycle_t *cycle)
{
    ngx_mail_plus_main_conf_t  *mpcf;

    mpcf = ngx_mail_plus_get_main_conf(cycle);

    if (mpcf) {
        ngx_mail_plus_dir_exit_process(cycle, mpcf);
    }
}
