/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_delivery.h"


/*
 * The delivery engine as an nginx module: its directives, their
 * configuration, and the hooks that start the queue runner
 * (ngx_mail_plus_delivery.c) in every worker and stop it when the worker
 * goes away.
 */


static void *ngx_mail_plus_delivery_create_conf(ngx_conf_t *cf);
static char *ngx_mail_plus_delivery_init_conf(ngx_conf_t *cf, void *conf);
#if (NGX_MAIL_SSL)
static ngx_int_t ngx_mail_plus_delivery_init_ssl(ngx_conf_t *cf,
    ngx_mail_plus_delivery_conf_t *dcf);
#endif
static char *ngx_mail_plus_delivery_route(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_mail_plus_delivery_route_param(ngx_conf_t *cf,
    ngx_mail_plus_relay_t *r, ngx_str_t *value, ngx_uint_t relay);
static ngx_int_t ngx_mail_plus_delivery_route_auth(ngx_conf_t *cf,
    ngx_mail_plus_relay_t *r, ngx_str_t *value);
static char *ngx_mail_plus_delivery_warning(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_mail_plus_delivery_double_bounce_to(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_mail_plus_delivery_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_mail_plus_delivery_init_process(ngx_cycle_t *cycle);
static void ngx_mail_plus_delivery_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_mail_plus_delivery_tls[] = {
    { ngx_string("off"), NGX_MAIL_PLUS_TLS_OFF },
    { ngx_string("on"), NGX_MAIL_PLUS_TLS_MAY },
    { ngx_string("required"), NGX_MAIL_PLUS_TLS_REQUIRED },
    { ngx_string("verify"), NGX_MAIL_PLUS_TLS_VERIFY },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_mail_plus_delivery_commands[] = {

    { ngx_string("queue_delivery"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, enable),
      NULL },

    { ngx_string("queue_retry_first"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, retry_first),
      NULL },

    { ngx_string("queue_retry_max"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, retry_max),
      NULL },

    { ngx_string("queue_lifetime"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, lifetime),
      NULL },

    { ngx_string("queue_delay_warning"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_mail_plus_delivery_warning,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, delay_warning),
      NULL },

    { ngx_string("queue_bounce_size_limit"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, bounce_size_limit),
      NULL },

    { ngx_string("queue_double_bounce_to"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_mail_plus_delivery_double_bounce_to,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("queue_scan_interval"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, scan_interval),
      NULL },

    { ngx_string("queue_destination_concurrency"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, concurrency),
      NULL },

    { ngx_string("queue_active_limit"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, active_limit),
      NULL },

    { ngx_string("queue_connect_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, connect_timeout),
      NULL },

    { ngx_string("queue_helo_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, helo_timeout),
      NULL },

    { ngx_string("queue_command_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, command_timeout),
      NULL },

    { ngx_string("queue_data_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, data_timeout),
      NULL },

    { ngx_string("queue_idle_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, idle_timeout),
      NULL },

    { ngx_string("queue_helo_name"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, helo_name),
      NULL },

    { ngx_string("queue_backend_starttls"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, tls),
      &ngx_mail_plus_delivery_tls },

    { ngx_string("queue_tls_verify"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, tls_verify),
      NULL },

    { ngx_string("queue_tls_verify_depth"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, tls_verify_depth),
      NULL },

    { ngx_string("queue_tls_trusted_certificate"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_MAIN_CONF_OFFSET,
      offsetof(ngx_mail_plus_delivery_conf_t, tls_trusted_certificate),
      NULL },

    { ngx_string("queue_route"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_2MORE,
      ngx_mail_plus_delivery_route,
      NGX_MAIL_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("queue_relay_host"),
      NGX_MAIL_MAIN_CONF|NGX_CONF_1MORE,
      ngx_mail_plus_delivery_route,
      NGX_MAIL_MAIN_CONF_OFFSET,
      1,
      NULL },

      ngx_null_command
};


static ngx_mail_module_t  ngx_mail_plus_delivery_module_ctx = {
    NULL,                                  /* protocol */

    ngx_mail_plus_delivery_create_conf,    /* create main configuration */
    ngx_mail_plus_delivery_init_conf,      /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL                                   /* merge server configuration */
};


ngx_module_t  ngx_mail_plus_delivery_module = {
    NGX_MODULE_V1,
    &ngx_mail_plus_delivery_module_ctx,    /* module context */
    ngx_mail_plus_delivery_commands,       /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_mail_plus_delivery_init_module,    /* init module */
    ngx_mail_plus_delivery_init_process,   /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_mail_plus_delivery_exit_process,   /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_mail_plus_delivery_create_conf(ngx_conf_t *cf)
{
    ngx_mail_plus_delivery_conf_t  *dcf;

    dcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_delivery_conf_t));
    if (dcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     dcf->helo_name = { 0, NULL };
     *     dcf->tls_trusted_certificate = { 0, NULL };
     *     dcf->routes = NULL;
     *     dcf->relay = NULL;
     *     dcf->double_bounce_to = { 0, NULL };
     */

    dcf->enable = NGX_CONF_UNSET;
    dcf->retry_first = NGX_CONF_UNSET;
    dcf->retry_max = NGX_CONF_UNSET;
    dcf->lifetime = NGX_CONF_UNSET;
    dcf->scan_interval = NGX_CONF_UNSET_MSEC;
    dcf->concurrency = NGX_CONF_UNSET_UINT;
    dcf->active_limit = NGX_CONF_UNSET_UINT;
    dcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    dcf->helo_timeout = NGX_CONF_UNSET_MSEC;
    dcf->command_timeout = NGX_CONF_UNSET_MSEC;
    dcf->data_timeout = NGX_CONF_UNSET_MSEC;
    dcf->idle_timeout = NGX_CONF_UNSET_MSEC;
    dcf->tls = NGX_CONF_UNSET_UINT;
    dcf->tls_verify = NGX_CONF_UNSET;
    dcf->tls_verify_depth = NGX_CONF_UNSET_UINT;
    dcf->delay_warning = NGX_CONF_UNSET;
    dcf->bounce_size_limit = NGX_CONF_UNSET_SIZE;

    return dcf;
}


static char *
ngx_mail_plus_delivery_init_conf(ngx_conf_t *cf, void *conf)
{
    ngx_mail_plus_delivery_conf_t *dcf = conf;

    ngx_conf_init_value(dcf->enable, 0);
    ngx_conf_init_value(dcf->retry_first, 300);
    ngx_conf_init_value(dcf->retry_max, 3600);
    ngx_conf_init_value(dcf->lifetime, 5 * 86400);
    ngx_conf_init_msec_value(dcf->scan_interval, 5000);
    ngx_conf_init_uint_value(dcf->concurrency, 20);
    ngx_conf_init_uint_value(dcf->active_limit, 1000);
    ngx_conf_init_msec_value(dcf->connect_timeout, 30000);
    ngx_conf_init_msec_value(dcf->helo_timeout, 300000);
    ngx_conf_init_msec_value(dcf->command_timeout, 300000);
    ngx_conf_init_msec_value(dcf->data_timeout, 600000);
    ngx_conf_init_msec_value(dcf->idle_timeout, 5000);
    ngx_conf_init_uint_value(dcf->tls, NGX_MAIL_PLUS_TLS_MAY);
    ngx_conf_init_value(dcf->tls_verify, 0);
    ngx_conf_init_uint_value(dcf->tls_verify_depth, 1);
    ngx_conf_init_value(dcf->delay_warning, 0);
    ngx_conf_init_size_value(dcf->bounce_size_limit, 1024 * 1024);

    if (dcf->helo_name.len == 0) {
        dcf->helo_name = cf->cycle->hostname;
    }

    if (dcf->retry_first < 1 || dcf->retry_max < dcf->retry_first) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"queue_retry_max\" must not be less than "
                      "\"queue_retry_first\", which must be positive");
        return NGX_CONF_ERROR;
    }

    if (dcf->concurrency == 0 || dcf->active_limit == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"queue_destination_concurrency\" and "
                      "\"queue_active_limit\" must be positive");
        return NGX_CONF_ERROR;
    }

#if (NGX_MAIL_SSL)

    if (ngx_mail_plus_delivery_init_ssl(cf, dcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

#endif

    return NGX_CONF_OK;
}


#if (NGX_MAIL_SSL)

/*
 * STARTTLS to next hops: one client context; the trusted certificates are
 * loaded when given, and must be when a destination verifies
 */

static ngx_int_t
ngx_mail_plus_delivery_init_ssl(ngx_conf_t *cf,
    ngx_mail_plus_delivery_conf_t *dcf)
{
    char                   *what;
    ngx_uint_t              i;
    ngx_pool_cleanup_t     *cln;
    ngx_mail_plus_relay_t  *r;

    what = NULL;

    if (dcf->tls_verify) {
        what = "queue_tls_verify";

    } else if (dcf->tls == NGX_MAIL_PLUS_TLS_VERIFY) {
        what = "queue_backend_starttls verify";

    } else if (dcf->relay && dcf->relay->tls == NGX_MAIL_PLUS_TLS_VERIFY) {
        what = "queue_relay_host ... starttls=verify";

    } else if (dcf->routes) {
        r = dcf->routes->elts;

        for (i = 0; i < dcf->routes->nelts; i++) {
            if (r[i].tls == NGX_MAIL_PLUS_TLS_VERIFY) {
                what = "queue_route ... starttls=verify";
                break;
            }
        }
    }

    if (what && dcf->tls_trusted_certificate.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "no \"queue_tls_trusted_certificate\" for \"%s\"",
                      what);
        return NGX_ERROR;
    }

    dcf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (dcf->ssl == NULL) {
        return NGX_ERROR;
    }

    dcf->ssl->log = cf->log;

    if (ngx_ssl_create(dcf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(dcf->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = dcf->ssl;

    /*
     * the peer's certificate is checked after the handshake (the verify
     * mode stays SSL_VERIFY_NONE): with "starttls=on" a certificate that
     * does not verify is still used, as by Postfix's "may" level
     */

    if (dcf->tls_trusted_certificate.len
        && ngx_ssl_trusted_certificate(cf, dcf->ssl,
                                       &dcf->tls_trusted_certificate,
                                       dcf->tls_verify_depth)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}

#endif


/*
 * queue_route domain host:port [lmtp] [starttls=...] [tls_name=name]
 *     [auth=login:password];
 * queue_relay_host host:port [starttls=...] [tls_name=name]
 *     [auth=login:password];
 */

static char *
ngx_mail_plus_delivery_route(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_delivery_conf_t *dcf = conf;

    ngx_int_t               rc;
    ngx_str_t              *value;
    ngx_url_t               u;
    ngx_uint_t              i, n;
    ngx_mail_plus_relay_t  *r;

    value = cf->args->elts;

    if (cmd->offset) {
        if (dcf->relay) {
            return "is duplicate";
        }

        r = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_relay_t));
        if (r == NULL) {
            return NGX_CONF_ERROR;
        }

        dcf->relay = r;
        n = 1;

    } else {
        if (dcf->routes == NULL) {
            dcf->routes = ngx_array_create(cf->pool, 4,
                                           sizeof(ngx_mail_plus_relay_t));
            if (dcf->routes == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        r = ngx_array_push(dcf->routes);
        if (r == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(r, sizeof(ngx_mail_plus_relay_t));

        r->domain = value[1];
        ngx_strlow(r->domain.data, r->domain.data, r->domain.len);
        n = 2;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[n];
    u.default_port = 25;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in \"%V\"",
                           u.err ? u.err : "no address", &u.url);
        return NGX_CONF_ERROR;
    }

    r->addr = u.addrs[0];
    r->name = u.addrs[0].name;
    r->protocol = NGX_MAIL_PLUS_SMTP;
    r->tls = NGX_MAIL_PLUS_TLS_MAY;

    /* the certificate name and SNI: the host as written, by default */

    r->tls_name.len = u.host.len;
    r->tls_name.data = ngx_pnalloc(cf->pool, u.host.len + 1);
    if (r->tls_name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(r->tls_name.data, u.host.data, u.host.len + 1);

    for (i = n + 1; i < cf->args->nelts; i++) {

        rc = ngx_mail_plus_delivery_route_param(cf, r, &value[i],
                                                cmd->offset);

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * one parameter after the address: "lmtp" (not for the relay host),
 * "starttls=", "tls_name=", "auth="; NGX_DECLINED: an invalid one
 */

static ngx_int_t
ngx_mail_plus_delivery_route_param(ngx_conf_t *cf, ngx_mail_plus_relay_t *r,
    ngx_str_t *value, ngx_uint_t relay)
{
    if (value->len == 4
        && ngx_strncmp(value->data, "lmtp", 4) == 0
        && !relay)
    {
        r->protocol = NGX_MAIL_PLUS_LMTP;
        return NGX_OK;
    }

    if (value->len > 9 && ngx_strncmp(value->data, "starttls=", 9) == 0) {

        if (ngx_strcmp(value->data + 9, "off") == 0) {
            r->tls = NGX_MAIL_PLUS_TLS_OFF;

        } else if (ngx_strcmp(value->data + 9, "required") == 0) {
            r->tls = NGX_MAIL_PLUS_TLS_REQUIRED;

        } else if (ngx_strcmp(value->data + 9, "verify") == 0) {
            r->tls = NGX_MAIL_PLUS_TLS_VERIFY;

        } else if (ngx_strcmp(value->data + 9, "on") != 0) {
            return NGX_DECLINED;
        }

        return NGX_OK;
    }

    if (value->len > 9 && ngx_strncmp(value->data, "tls_name=", 9) == 0) {
        r->tls_name.len = value->len - 9;
        r->tls_name.data = value->data + 9;
        return NGX_OK;
    }

    if (value->len > 5 && ngx_strncmp(value->data, "auth=", 5) == 0) {
        return ngx_mail_plus_delivery_route_auth(cf, r, value);
    }

    return NGX_DECLINED;
}


/* "auth=login:password": the argument of AUTH PLAIN, encoded once */

static ngx_int_t
ngx_mail_plus_delivery_route_auth(ngx_conf_t *cf, ngx_mail_plus_relay_t *r,
    ngx_str_t *value)
{
    u_char     *p;
    ngx_str_t   plain;

    p = ngx_strlchr(value->data + 5, value->data + value->len, ':');
    if (p == NULL) {
        return NGX_DECLINED;
    }

    /* AUTH PLAIN: authzid NUL authcid NUL password */

    plain.len = value->len - 5 + 1;
    plain.data = ngx_pnalloc(cf->pool, plain.len);
    if (plain.data == NULL) {
        return NGX_ERROR;
    }

    plain.data[0] = '\0';
    ngx_memcpy(plain.data + 1, value->data + 5, value->len - 5);
    plain.data[1 + (p - value->data - 5)] = '\0';

    r->auth.len = ngx_base64_encoded_length(plain.len);
    r->auth.data = ngx_pnalloc(cf->pool, r->auth.len);
    if (r->auth.data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64(&r->auth, &plain);

    return NGX_OK;
}


/* queue_delay_warning time | off; */

static char *
ngx_mail_plus_delivery_warning(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_plus_delivery_conf_t *dcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (dcf->delay_warning != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    if (ngx_strcmp(value[1].data, "off") == 0) {
        dcf->delay_warning = 0;
        return NGX_CONF_OK;
    }

    dcf->delay_warning = ngx_parse_time(&value[1], 1);

    if (dcf->delay_warning == (time_t) NGX_ERROR || dcf->delay_warning == 0) {
        return "invalid value";
    }

    return NGX_CONF_OK;
}


/*
 * queue_double_bounce_to address | off;  an address as an envelope holds
 * it: no spaces, no control bytes, no angle brackets, an "@"
 */

static char *
ngx_mail_plus_delivery_double_bounce_to(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_plus_delivery_conf_t *dcf = conf;

    size_t      i;
    ngx_str_t  *value;

    if (dcf->double_bounce_to.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        ngx_str_set(&dcf->double_bounce_to, "");
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].len > NGX_MAIL_PLUS_SMTP_MAX_PATH
        || ngx_strlchr(value[1].data, value[1].data + value[1].len, '@')
           == NULL)
    {
        goto invalid;
    }

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] <= ' ' || value[1].data[i] == 0x7f
            || value[1].data[i] == '<' || value[1].data[i] == '>')
        {
            goto invalid;
        }
    }

    dcf->double_bounce_to = value[1];

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid address \"%V\" in \"%V\"", &value[1],
                       &cmd->name);
    return NGX_CONF_ERROR;
}


/* in the master, at start and reload: claims of gone workers come back */

static ngx_int_t
ngx_mail_plus_delivery_init_module(ngx_cycle_t *cycle)
{
    ngx_mail_plus_queue_t          *q;
    ngx_mail_plus_delivery_conf_t  *dcf;

    dcf = ngx_mail_plus_cycle_get_main_conf(cycle,
                                            ngx_mail_plus_delivery_module);
    q = ngx_mail_plus_queue_get(cycle);

    if (dcf == NULL || q == NULL) {
        return NGX_OK;
    }

    return ngx_mail_plus_queue_delivery_init(cycle, q);
}


/* in every worker, when "queue_delivery" is on: the runner starts */

static ngx_int_t
ngx_mail_plus_delivery_init_process(ngx_cycle_t *cycle)
{
    ngx_mail_plus_queue_t          *q;
    ngx_mail_plus_delivery_conf_t  *dcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    dcf = ngx_mail_plus_cycle_get_main_conf(cycle,
                                            ngx_mail_plus_delivery_module);
    q = ngx_mail_plus_queue_get(cycle);

    if (dcf == NULL || q == NULL || !dcf->enable) {
        return NGX_OK;
    }

    return ngx_mail_plus_delivery_init_worker(cycle, dcf, q);
}


static void
ngx_mail_plus_delivery_exit_process(ngx_cycle_t *cycle)
{
    ngx_mail_plus_delivery_exit_worker(cycle);
}
