
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_delivery.h"


/*
 * The queue runner.  Every worker takes part: it claims due messages by
 * rename() into active/<ID>.<pid> (new ones at once when it committed them,
 * the others by a periodic scan of incoming/ and deferred/), splits the
 * recipients by destination (a local domain's recipient goes to its
 * mailbox backend as the router decides, over LMTP or SMTP; others to a
 * per-domain route or the relay host), hands each part to a connection of
 * that destination, and when every part is done records the result:
 * removed, or deferred with a new state file and a retry time, with a
 * bounce for the recipients that failed.
 */


typedef struct {
    ngx_mail_plus_delivery_conf_t  *dcf;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_queue_t          *queue;
    ngx_array_t                     local;     /* ngx_str_t */
    ngx_queue_t                     dests;     /* ngx_mail_plus_dest_t */
    ngx_queue_t                     msgs;      /* ngx_mail_plus_dmsg_t */
    ngx_uint_t                      nmsgs;
    ngx_event_t                     scan;
    ngx_pool_t                     *scan_pool;  /* a scan in the thread */
    ngx_mail_plus_queue_due_t       due;
} ngx_mail_plus_delivery_ctx_t;


static void *ngx_mail_plus_delivery_create_conf(ngx_conf_t *cf);
static char *ngx_mail_plus_delivery_init_conf(ngx_conf_t *cf, void *conf);
#if (NGX_MAIL_SSL)
static ngx_int_t ngx_mail_plus_delivery_init_ssl(ngx_conf_t *cf,
    ngx_mail_plus_delivery_conf_t *dcf);
#endif
static char *ngx_mail_plus_delivery_route(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_mail_plus_delivery_warning(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_mail_plus_delivery_double_bounce_to(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_mail_plus_delivery_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_mail_plus_delivery_init_process(ngx_cycle_t *cycle);
static void ngx_mail_plus_delivery_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_mail_plus_delivery_local_domains(ngx_cycle_t *cycle);
static void ngx_mail_plus_delivery_scan_handler(ngx_event_t *ev);
static void ngx_mail_plus_delivery_scanned(void *data);
static void ngx_mail_plus_delivery_notify(ngx_mail_plus_queue_t *q,
    u_char *id);
static void ngx_mail_plus_delivery_claim(ngx_uint_t which, u_char *id);
static void ngx_mail_plus_delivery_loaded(void *data);
static ngx_int_t ngx_mail_plus_delivery_records(ngx_mail_plus_dmsg_t *msg,
    char **reason);
static void ngx_mail_plus_delivery_plan(ngx_mail_plus_dmsg_t *msg);
static ngx_mail_plus_dest_t *ngx_mail_plus_delivery_resolve(
    ngx_mail_plus_dmsg_t *msg, ngx_mail_plus_rcpt_t *rcpt);
static ngx_mail_plus_dest_t *ngx_mail_plus_delivery_dest(
    struct sockaddr *sa, socklen_t socklen, in_port_t port,
    ngx_uint_t protocol, ngx_mail_plus_relay_t *relay,
    ngx_mail_plus_server_t *server);
static ngx_uint_t ngx_mail_plus_delivery_is_local(ngx_str_t *domain);
static void ngx_mail_plus_delivery_submit(ngx_mail_plus_job_t *job);
static void ngx_mail_plus_delivery_set(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt, ngx_uint_t code, ngx_str_t *text);
static void ngx_mail_plus_delivery_finalize(ngx_mail_plus_dmsg_t *msg);
static void ngx_mail_plus_delivery_bounced(ngx_mail_plus_queue_msg_t *m);
static void ngx_mail_plus_delivery_record(ngx_mail_plus_dmsg_t *msg,
    ngx_uint_t bounced);
static void ngx_mail_plus_delivery_defer(ngx_mail_plus_dmsg_t *msg,
    time_t next, ngx_str_t *state);
static void ngx_mail_plus_delivery_corrupt(ngx_mail_plus_dmsg_t *msg,
    char *reason);
static void ngx_mail_plus_delivery_deferred(void *data);
static void ngx_mail_plus_delivery_recorded(ngx_mail_plus_dmsg_t *msg,
    ngx_int_t rc);
static void ngx_mail_plus_delivery_retry(ngx_event_t *ev);
static void ngx_mail_plus_delivery_reported(ngx_mail_plus_queue_msg_t *m);
static void ngx_mail_plus_delivery_free(ngx_mail_plus_dmsg_t *msg);


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


/* a spool operation the thread pool could not take is tried again */

#define NGX_MAIL_PLUS_DELIVERY_RETRY  1000


static ngx_mail_plus_delivery_ctx_t  *ngx_mail_plus_delivery;

static ngx_str_t  ngx_mail_plus_delivery_none = ngx_string("none");


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

    u_char                 *p;
    ngx_str_t              *value, plain;
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

        if (value[i].len == 4
            && ngx_strncmp(value[i].data, "lmtp", 4) == 0
            && cmd->offset == 0)
        {
            r->protocol = NGX_MAIL_PLUS_LMTP;
            continue;
        }

        if (value[i].len > 9
            && ngx_strncmp(value[i].data, "starttls=", 9) == 0)
        {
            if (ngx_strcmp(value[i].data + 9, "off") == 0) {
                r->tls = NGX_MAIL_PLUS_TLS_OFF;

            } else if (ngx_strcmp(value[i].data + 9, "required") == 0) {
                r->tls = NGX_MAIL_PLUS_TLS_REQUIRED;

            } else if (ngx_strcmp(value[i].data + 9, "verify") == 0) {
                r->tls = NGX_MAIL_PLUS_TLS_VERIFY;

            } else if (ngx_strcmp(value[i].data + 9, "on") != 0) {
                goto invalid;
            }

            continue;
        }

        if (value[i].len > 9
            && ngx_strncmp(value[i].data, "tls_name=", 9) == 0)
        {
            r->tls_name.len = value[i].len - 9;
            r->tls_name.data = value[i].data + 9;
            continue;
        }

        if (value[i].len > 5 && ngx_strncmp(value[i].data, "auth=", 5) == 0) {

            p = ngx_strlchr(value[i].data + 5, value[i].data + value[i].len,
                            ':');
            if (p == NULL) {
                goto invalid;
            }

            /* AUTH PLAIN: authzid NUL authcid NUL password */

            plain.len = value[i].len - 5 + 1;
            plain.data = ngx_pnalloc(cf->pool, plain.len);
            if (plain.data == NULL) {
                return NGX_CONF_ERROR;
            }

            plain.data[0] = '\0';
            ngx_memcpy(plain.data + 1, value[i].data + 5, value[i].len - 5);
            plain.data[1 + (p - value[i].data - 5)] = '\0';

            r->auth.len = ngx_base64_encoded_length(plain.len);
            r->auth.data = ngx_pnalloc(cf->pool, r->auth.len);
            if (r->auth.data == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_encode_base64(&r->auth, &plain);
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


static ngx_int_t
ngx_mail_plus_delivery_init_process(ngx_cycle_t *cycle)
{
    ngx_mail_plus_queue_t          *q;
    ngx_mail_plus_delivery_ctx_t   *ctx;
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

    ctx = ngx_pcalloc(cycle->pool, sizeof(ngx_mail_plus_delivery_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->dcf = dcf;
    ctx->queue = q;
    ctx->mpcf = ngx_mail_plus_get_main_conf(cycle);

    ngx_queue_init(&ctx->dests);
    ngx_queue_init(&ctx->msgs);

    ngx_mail_plus_delivery = ctx;

    if (ngx_mail_plus_delivery_local_domains(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_mail_plus_queue_set_notify(q, ngx_mail_plus_delivery_notify);

    ctx->scan.handler = ngx_mail_plus_delivery_scan_handler;
    ctx->scan.data = ctx;
    ctx->scan.log = cycle->log;
    ctx->scan.cancelable = 1;

    /* the workers start at once, spread over a few milliseconds */

    ngx_add_timer(&ctx->scan, 1 + ngx_random() % 100);

    return NGX_OK;
}


/* the local domains of every store-and-forward server */

static ngx_int_t
ngx_mail_plus_delivery_local_domains(ngx_cycle_t *cycle)
{
    ngx_str_t                       *d, *l;
    ngx_uint_t                       i, j;
    ngx_mail_core_srv_conf_t       **cscfp;
    ngx_mail_core_main_conf_t       *cmcf;
    ngx_mail_plus_smtp_srv_conf_t   *sscf;

    if (ngx_array_init(&ngx_mail_plus_delivery->local, cycle->pool, 4,
                       sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_mail_plus_cycle_get_main_conf(cycle, ngx_mail_core_module);
    cscfp = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        sscf = cscfp[i]->ctx->srv_conf[ngx_mail_plus_smtp_module.ctx_index];

        if (!sscf->enable || sscf->local_domains == NULL) {
            continue;
        }

        d = sscf->local_domains->elts;

        for (j = 0; j < sscf->local_domains->nelts; j++) {
            l = ngx_array_push(&ngx_mail_plus_delivery->local);
            if (l == NULL) {
                return NGX_ERROR;
            }

            *l = d[j];
        }
    }

    return NGX_OK;
}


/* a worker going away gives back what it claimed and did not finish */

static void
ngx_mail_plus_delivery_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t                   *q;
    ngx_mail_plus_dmsg_t          *msg;
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ngx_mail_plus_delivery;

    if (ctx == NULL) {
        return;
    }

    while (!ngx_queue_empty(&ctx->msgs)) {
        q = ngx_queue_head(&ctx->msgs);
        msg = ngx_queue_data(q, ngx_mail_plus_dmsg_t, queue);

        (void) ngx_mail_plus_queue_release(ctx->queue, msg->id, cycle->log);

        ngx_mail_plus_delivery_free(msg);
    }

    ngx_mail_plus_delivery = NULL;
}


/*
 * the periodic scan: the spool's directories are read in the thread
 * pool, never in the event loop, and the due messages found are claimed
 * when it is done
 */

static void
ngx_mail_plus_delivery_scan_handler(ngx_event_t *ev)
{
    ngx_int_t                      rc;
    ngx_uint_t                     room;
    ngx_pool_t                    *pool;
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    room = (ctx->nmsgs < ctx->dcf->active_limit)
           ? ctx->dcf->active_limit - ctx->nmsgs : 0;

    if (ctx->scan_pool || room == 0) {
        ngx_add_timer(ev, ctx->dcf->scan_interval);
        return;
    }

    pool = ngx_create_pool(1024, ev->log);
    if (pool == NULL) {
        ngx_add_timer(ev, ctx->dcf->scan_interval);
        return;
    }

    ctx->due.ids = ngx_palloc(pool, room
                                    * sizeof(ngx_mail_plus_queue_due_id_t));
    if (ctx->due.ids == NULL) {
        ngx_destroy_pool(pool);
        ngx_add_timer(ev, ctx->dcf->scan_interval);
        return;
    }

    ctx->due.nalloc = room;
    ctx->due.now = ngx_time();
    ctx->scan_pool = pool;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                   "delivery scan: room for %ui messages", room);

    rc = ngx_mail_plus_queue_scan(ctx->queue, &ctx->due,
                                  ngx_mail_plus_delivery_scanned, ctx, pool,
                                  ev->log);

    if (rc == NGX_AGAIN) {
        return;
    }

    /* the thread pool is busy: the next scan */

    ctx->scan_pool = NULL;
    ngx_destroy_pool(pool);

    ngx_add_timer(ev, ctx->dcf->scan_interval);
}


static void
ngx_mail_plus_delivery_scanned(void *data)
{
    ngx_mail_plus_delivery_ctx_t *ctx = data;

    ngx_uint_t  i;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ctx->scan.log, 0,
                   "delivery scan: %ui messages due", ctx->due.nids);

    if (ngx_mail_plus_delivery == ctx) {
        for (i = 0; i < ctx->due.nids; i++) {
            if (ctx->nmsgs >= ctx->dcf->active_limit
                || ngx_exiting || ngx_terminate)
            {
                break;
            }

            ngx_mail_plus_delivery_claim(ctx->due.ids[i].which,
                                         ctx->due.ids[i].id);
        }
    }

    ngx_destroy_pool(ctx->scan_pool);
    ctx->scan_pool = NULL;

    if (!(ngx_exiting || ngx_terminate || ngx_quit)) {
        ngx_add_timer(&ctx->scan, ctx->dcf->scan_interval);
    }
}


/* a message this worker has just committed: scheduled at once */

static void
ngx_mail_plus_delivery_notify(ngx_mail_plus_queue_t *q, u_char *id)
{
    if (ngx_mail_plus_delivery == NULL || ngx_exiting || ngx_terminate
        || ngx_mail_plus_delivery->nmsgs
           >= ngx_mail_plus_delivery->dcf->active_limit)
    {
        return;
    }

    ngx_mail_plus_delivery_claim(NGX_MAIL_PLUS_QUEUE_INCOMING, id);
}


/*
 * the claim, and the reads of the envelope and the state file, go to the
 * thread pool; when it cannot take them, the message stays where it is,
 * for the next scan
 */

static void
ngx_mail_plus_delivery_claim(ngx_uint_t which, u_char *id)
{
    ngx_int_t                      rc;
    ngx_pool_t                    *pool;
    ngx_mail_plus_dmsg_t          *msg;
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ngx_mail_plus_delivery;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    msg = ngx_pcalloc(pool, sizeof(ngx_mail_plus_dmsg_t));
    if (msg == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    msg->pool = pool;
    msg->log = ngx_cycle->log;
    msg->spool = ctx->queue;
    msg->fd = NGX_INVALID_FILE;

    msg->retry.data = msg;
    msg->retry.log = msg->log;
    msg->retry.cancelable = 1;

    ngx_memcpy(msg->id, id, NGX_MAIL_PLUS_QUEUE_ID_LEN);

    ngx_queue_insert_tail(&ctx->msgs, &msg->queue);
    ctx->nmsgs++;

    msg->load.which = which;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: claim", msg->id);

    rc = ngx_mail_plus_queue_load(ctx->queue, msg->id, &msg->load,
                                  ngx_mail_plus_delivery_loaded, msg, pool,
                                  msg->log);

    if (rc != NGX_AGAIN) {
        ngx_mail_plus_delivery_free(msg);
    }
}


/* the claim and the reads are done: the records are parsed */

static void
ngx_mail_plus_delivery_loaded(void *data)
{
    ngx_mail_plus_dmsg_t *msg = data;

    char                          *reason;
    ngx_int_t                      rc;
    ngx_str_t                      state;
    ngx_mail_plus_delivery_ctx_t  *ctx;

    ctx = ngx_mail_plus_delivery;

    msg->fd = msg->load.fd;

    if (msg->fd == NGX_INVALID_FILE) {

        /* another worker was first, or a failure, logged */

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                       "delivery %s: not claimed", msg->id);

        ngx_mail_plus_delivery_free(msg);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: claimed, %O bytes", msg->id, msg->load.size);

    if (ctx == NULL) {
        (void) ngx_mail_plus_queue_release(msg->spool, msg->id, msg->log);
        ngx_mail_plus_delivery_free(msg);
        return;
    }

    if (msg->load.size == 0) {
        ngx_mail_plus_delivery_corrupt(msg, "empty file");
        return;
    }

    rc = NGX_ERROR;

    if (msg->load.head.data) {
        rc = ngx_mail_plus_delivery_records(msg, &reason);
    }

    if (rc == NGX_DECLINED) {
        ngx_mail_plus_delivery_corrupt(msg, reason);
        return;
    }

    if (rc != NGX_OK) {

        /*
         * a read error or no memory: the file may well be sound, so it
         * is not set aside but retried, at the longest interval
         */

        ngx_log_error(NGX_LOG_CRIT, msg->log, 0,
                      "queue: message %s is unreadable, deferred", msg->id);

        ngx_str_null(&state);

        ngx_mail_plus_delivery_defer(msg, ngx_time() + ctx->dcf->retry_max,
                                     &state);
        return;
    }

    ngx_mail_plus_delivery_plan(msg);
}


/* the queue's records of the claimed file, read into the message */

static ngx_int_t
ngx_mail_plus_delivery_records(ngx_mail_plus_dmsg_t *msg, char **reason)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_mail_plus_rcpt_t          *rcpt;
    ngx_mail_plus_queue_rcpt_t    *qr;
    ngx_mail_plus_queue_record_t   r;

    ngx_memzero(&r, sizeof(ngx_mail_plus_queue_record_t));

    r.rcpts = ngx_array_create(msg->pool, 4,
                               sizeof(ngx_mail_plus_queue_rcpt_t));
    if (r.rcpts == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_mail_plus_spool_envelope(&r, msg->id, msg->load.head.data,
                                      msg->load.head.len, msg->load.size,
                                      reason);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_mail_plus_spool_state(&r, msg->load.state.data, msg->load.state.len);

    if (ngx_array_init(&msg->rcpts, msg->pool, r.rcpts->nelts,
                       sizeof(ngx_mail_plus_rcpt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    msg->body = r.body;
    msg->size = r.size;
    msg->arrival = r.arrival;
    msg->sender = r.sender;
    msg->ret = r.ret;
    msg->envid = r.envid;
    msg->body_type = r.body_type;
    msg->smtputf8 = r.smtputf8;
    msg->attempts = r.attempts;
    msg->warned = r.warned;

    qr = r.rcpts->elts;
    rcpt = msg->rcpts.elts;
    msg->rcpts.nelts = r.rcpts->nelts;

    for (i = 0; i < r.rcpts->nelts; i++, rcpt++) {
        ngx_memzero(rcpt, sizeof(ngx_mail_plus_rcpt_t));
        rcpt->addr = qr[i].addr;
        rcpt->login = qr[i].addr;
        rcpt->notify = qr[i].notify;
        rcpt->orcpt = qr[i].orcpt;
        rcpt->notify_mask = qr[i].notify_mask;
        rcpt->state = qr[i].done ? NGX_MAIL_PLUS_RCPT_DONE
                                 : NGX_MAIL_PLUS_RCPT_PENDING;
    }

    return NGX_OK;
}


/* recipients split by destination; each part is a job */

static void
ngx_mail_plus_delivery_plan(ngx_mail_plus_dmsg_t *msg)
{
    ngx_str_t               text;
    ngx_uint_t              i, j, njobs;
    ngx_mail_plus_job_t   **jobs, *job;
    ngx_mail_plus_dest_t   *dest;
    ngx_mail_plus_rcpt_t   *rcpt;

    rcpt = msg->rcpts.elts;

    jobs = ngx_pcalloc(msg->pool, msg->rcpts.nelts * sizeof(void *));
    if (jobs == NULL) {
        ngx_str_set(&text, "4.3.0 out of memory");
        goto defer_all;
    }

    /* the message is held while jobs are made and started */

    msg->jobs = 1;
    njobs = 0;

    if (ngx_time() - msg->arrival > ngx_mail_plus_delivery->dcf->lifetime) {
        goto done;
    }

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if (rcpt[i].state != NGX_MAIL_PLUS_RCPT_PENDING) {
            continue;
        }

        dest = ngx_mail_plus_delivery_resolve(msg, &rcpt[i]);

        if (dest == NULL) {
            continue;
        }

        rcpt[i].dest = dest;

        for (j = 0; j < njobs; j++) {
            if (jobs[j]->dest == dest
                && jobs[j]->nrcpts < NGX_MAIL_PLUS_JOB_RCPTS)
            {
                break;
            }
        }

        if (j == njobs) {
            job = ngx_pcalloc(msg->pool, sizeof(ngx_mail_plus_job_t));
            if (job == NULL) {
                ngx_str_set(&text, "4.3.0 out of memory");
                ngx_mail_plus_delivery_set(msg, &rcpt[i], 451, &text);
                continue;
            }

            job->msg = msg;
            job->dest = dest;
            jobs[njobs++] = job;
        }

        jobs[j]->rcpts[jobs[j]->nrcpts++] = i;
    }

    msg->jobs += njobs;

    for (j = 0; j < njobs; j++) {
        ngx_mail_plus_delivery_submit(jobs[j]);
    }

done:

    if (--msg->jobs == 0) {
        ngx_mail_plus_delivery_finalize(msg);
    }

    return;

defer_all:

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_PENDING) {
            ngx_mail_plus_delivery_set(msg, &rcpt[i], 451, &text);
        }
    }

    ngx_mail_plus_delivery_finalize(msg);
}


/*
 * where a recipient goes: a local domain to its mailbox backend (LMTP if
 * the server has an lmtp port, else SMTP), others by queue_route, then
 * queue_relay_host; NULL: no destination, the recipient has its result
 */

static ngx_mail_plus_dest_t *
ngx_mail_plus_delivery_resolve(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt)
{
    size_t                          len;
    u_char                         *at;
    ngx_int_t                       rc;
    ngx_str_t                       domain, text;
    ngx_uint_t                      i;
    ngx_mail_plus_route_t           route;
    ngx_mail_plus_relay_t          *r;
    ngx_mail_plus_delivery_ctx_t   *ctx;
    ngx_mail_plus_delivery_conf_t  *dcf;

    ctx = ngx_mail_plus_delivery;
    dcf = ctx->dcf;

    at = NULL;

    for (i = rcpt->addr.len; i > 0; i--) {
        if (rcpt->addr.data[i - 1] == '@') {
            at = &rcpt->addr.data[i - 1];
            break;
        }
    }

    domain.data = at ? at + 1 : rcpt->addr.data + rcpt->addr.len;
    domain.len = rcpt->addr.data + rcpt->addr.len - domain.data;

    if (ngx_mail_plus_delivery_is_local(&domain)) {

        if (ctx->mpcf == NULL) {
            ngx_str_set(&text, "4.3.5 no router for the local domain");
            ngx_mail_plus_delivery_set(msg, rcpt, 451, &text);
            return NULL;
        }

        /* the same answer as at RCPT time: the same server, the same address */

        rc = ngx_mail_plus_recipient(ctx->mpcf, &rcpt->addr, &route, msg->pool,
                                     msg->log);

        if (rc == NGX_ERROR) {
            ngx_str_set(&text, "4.3.0 router error");
            ngx_mail_plus_delivery_set(msg, rcpt, 451, &text);
            return NULL;
        }

        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_INFO, msg->log, 0,
                          "recipient \"%V\" refused: %V",
                          &rcpt->addr, &route.reason);
            ngx_str_set(&text, "5.1.1 no such local recipient");
            ngx_mail_plus_delivery_set(msg, rcpt, 550, &text);
            return NULL;
        }

        if (route.status != NGX_MAIL_PLUS_ALLOW || route.server == NULL) {
            len = sizeof("4.4.3 no mailbox server: ") - 1 + route.reason.len;

            text.data = ngx_pnalloc(msg->pool, len);
            if (text.data == NULL) {
                ngx_str_set(&text, "4.4.3 no mailbox server");

            } else {
                text.len = ngx_sprintf(text.data,
                                       "4.4.3 no mailbox server: %V",
                                       &route.reason)
                           - text.data;
            }

            ngx_mail_plus_delivery_set(msg, rcpt, 451, &text);
            return NULL;
        }

        rcpt->login = route.login;

        return ngx_mail_plus_delivery_dest(route.server->addr.sockaddr,
                                           route.server->addr.socklen,
                                           route.port, route.protocol, NULL,
                                           route.server);
    }

    r = dcf->routes ? dcf->routes->elts : NULL;

    for (i = 0; dcf->routes && i < dcf->routes->nelts; i++) {

        if (r[i].domain.data[0] == '.') {
            if (domain.len > r[i].domain.len
                && ngx_strncasecmp(domain.data + domain.len - r[i].domain.len,
                                   r[i].domain.data, r[i].domain.len)
                   == 0)
            {
                break;
            }

        } else if (domain.len == r[i].domain.len
                   && ngx_strncasecmp(domain.data, r[i].domain.data,
                                      domain.len)
                      == 0)
        {
            break;
        }
    }

    if (dcf->routes && i < dcf->routes->nelts) {
        r = &r[i];

    } else {
        r = dcf->relay;
    }

    if (r == NULL) {
        ngx_str_set(&text, "4.4.4 no route to the domain (no relay host)");
        ngx_mail_plus_delivery_set(msg, rcpt, 451, &text);
        return NULL;
    }

    return ngx_mail_plus_delivery_dest(r->addr.sockaddr, r->addr.socklen, 0,
                                       r->protocol, r, NULL);
}


static ngx_uint_t
ngx_mail_plus_delivery_is_local(ngx_str_t *domain)
{
    ngx_str_t   *d;
    ngx_uint_t   i;

    d = ngx_mail_plus_delivery->local.elts;

    for (i = 0; i < ngx_mail_plus_delivery->local.nelts; i++) {

        if (d[i].data[0] != '.') {
            if (domain->len == d[i].len
                && ngx_strncasecmp(domain->data, d[i].data, d[i].len) == 0)
            {
                return 1;
            }

        } else if (domain->len > d[i].len
                   && ngx_strncasecmp(domain->data + domain->len - d[i].len,
                                      d[i].data, d[i].len)
                      == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* destinations live as long as the worker: as many as servers and routes */

static ngx_mail_plus_dest_t *
ngx_mail_plus_delivery_dest(struct sockaddr *sa, socklen_t socklen,
    in_port_t port, ngx_uint_t protocol, ngx_mail_plus_relay_t *relay,
    ngx_mail_plus_server_t *server)
{
    u_char                        text[NGX_SOCKADDR_STRLEN];
    ngx_queue_t                  *q;
    ngx_mail_plus_dest_t         *d;
    ngx_mail_plus_delivery_ctx_t *ctx;

    ctx = ngx_mail_plus_delivery;

    for (q = ngx_queue_head(&ctx->dests);
         q != ngx_queue_sentinel(&ctx->dests);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_mail_plus_dest_t, queue);

        if (d->protocol == protocol
            && relay == d->relay
            && (port == 0 || ngx_inet_get_port(d->sockaddr) == port)
            && ngx_cmp_sockaddr(d->sockaddr, d->socklen, sa, socklen,
                                port == 0)
               == NGX_OK)
        {
            return d;
        }
    }

    d = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_mail_plus_dest_t));
    if (d == NULL) {
        return NULL;
    }

    d->sockaddr = ngx_pcalloc(ngx_cycle->pool, socklen);
    if (d->sockaddr == NULL) {
        return NULL;
    }

    ngx_memcpy(d->sockaddr, sa, socklen);
    d->socklen = socklen;

    if (port) {
        ngx_inet_set_port(d->sockaddr, port);
    }

    d->name.len = ngx_sock_ntop(d->sockaddr, d->socklen, text,
                                NGX_SOCKADDR_STRLEN, 1);
    d->name.data = ngx_pnalloc(ngx_cycle->pool, d->name.len);
    if (d->name.data == NULL) {
        return NULL;
    }

    ngx_memcpy(d->name.data, text, d->name.len);

    d->protocol = protocol;
    d->server = server;

    if (relay) {
        d->auth = relay->auth;
        d->tls = relay->tls;
        d->tls_name = relay->tls_name;
        d->relay = relay;

    } else {
        d->tls = ctx->dcf->tls;
        d->tls_name = server->name;    /* as written, null-terminated */
    }

    /* with "queue_tls_verify on", TLS that is required is also verified */

    if (d->tls == NGX_MAIL_PLUS_TLS_REQUIRED && ctx->dcf->tls_verify) {
        d->tls = NGX_MAIL_PLUS_TLS_VERIFY;
    }

    ngx_queue_init(&d->idle);
    ngx_queue_init(&d->jobs);
    ngx_queue_insert_tail(&ctx->dests, &d->queue);

    return d;
}


/* a job takes an idle connection, or a new one, or waits its turn */

static void
ngx_mail_plus_delivery_submit(ngx_mail_plus_job_t *job)
{
    ngx_mail_plus_dest_t  *dest;

    dest = job->dest;

    if (ngx_mail_plus_client_take_idle(dest, job) == NGX_OK) {
        return;
    }

    if (dest->active < ngx_mail_plus_delivery->dcf->concurrency) {
        ngx_mail_plus_client_start(ngx_mail_plus_delivery->dcf, dest, job);
        return;
    }

    ngx_queue_insert_tail(&dest->jobs, &job->queue);
}


ngx_mail_plus_job_t *
ngx_mail_plus_delivery_next_job(ngx_mail_plus_dest_t *dest)
{
    ngx_queue_t  *q;

    if (ngx_mail_plus_delivery == NULL || ngx_exiting || ngx_terminate
        || ngx_queue_empty(&dest->jobs))
    {
        return NULL;
    }

    q = ngx_queue_head(&dest->jobs);
    ngx_queue_remove(q);

    return ngx_queue_data(q, ngx_mail_plus_job_t, queue);
}


/* the destination does not answer: its waiting jobs are deferred too */

void
ngx_mail_plus_delivery_dest_failed(ngx_mail_plus_dest_t *dest,
    ngx_str_t *text)
{
    ngx_queue_t          *q;
    ngx_mail_plus_job_t  *job;

    while (!ngx_queue_empty(&dest->jobs)) {
        q = ngx_queue_head(&dest->jobs);
        ngx_queue_remove(q);

        job = ngx_queue_data(q, ngx_mail_plus_job_t, queue);

        ngx_mail_plus_delivery_result_all(job, 451, text);
        ngx_mail_plus_delivery_job_done(job);
    }
}


void
ngx_mail_plus_delivery_result_all(ngx_mail_plus_job_t *job, ngx_uint_t code,
    ngx_str_t *text)
{
    ngx_uint_t             i;
    ngx_mail_plus_rcpt_t  *rcpt;

    rcpt = job->msg->rcpts.elts;

    for (i = 0; i < job->nrcpts; i++) {
        if (rcpt[job->rcpts[i]].state == NGX_MAIL_PLUS_RCPT_PENDING) {
            ngx_mail_plus_delivery_result(job, i, code, text, 0);
        }
    }
}


/* the result of the i-th recipient of a job, and its log line */

void
ngx_mail_plus_delivery_result(ngx_mail_plus_job_t *job, ngx_uint_t i,
    ngx_uint_t code, ngx_str_t *text, ngx_uint_t remote)
{
    ngx_mail_plus_rcpt_t  *rcpt;

    rcpt = job->msg->rcpts.elts;
    rcpt = &rcpt[job->rcpts[i]];

    rcpt->remote = remote;

    ngx_mail_plus_delivery_set(job->msg, rcpt, code, text);
}


static void
ngx_mail_plus_delivery_set(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_rcpt_t *rcpt, ngx_uint_t code, ngx_str_t *text)
{
    u_char                 *p, *last;
    ngx_str_t               dsn;
    const char             *status;
    ngx_atomic_t           *counter;
    ngx_mail_plus_stats_t  *stats;

    rcpt->code = code;

    rcpt->reply.data = ngx_pnalloc(msg->pool, text->len);
    if (rcpt->reply.data) {
        rcpt->reply.len = text->len;
        ngx_memcpy(rcpt->reply.data, text->data, text->len);

    } else {
        rcpt->reply.len = 0;
    }

    /* the enhanced status code (RFC 3463), after the reply code if any */

    p = rcpt->reply.data;
    last = p + rcpt->reply.len;

    if (rcpt->remote && last - p > 4) {
        p += 4;
    }

    dsn.data = p;

    while (p < last && ((*p >= '0' && *p <= '9') || *p == '.')) {
        p++;
    }

    dsn.len = p - dsn.data;

    if (dsn.len < 5 || dsn.data[0] != (u_char) ('0' + code / 100)) {
        if (code / 100 == 2) {
            ngx_str_set(&dsn, "2.0.0");

        } else if (code / 100 == 5) {
            ngx_str_set(&dsn, "5.0.0");

        } else {
            ngx_str_set(&dsn, "4.0.0");
        }
    }

    rcpt->dsn = dsn;

    stats = ngx_mail_plus_zone_stats();

    if (code / 100 == 2) {
        rcpt->state = NGX_MAIL_PLUS_RCPT_SENT;
        status = "sent";
        counter = stats ? &stats->sent : NULL;

    } else if (code / 100 == 5) {
        rcpt->state = NGX_MAIL_PLUS_RCPT_FAILED;
        status = "bounced";
        counter = stats ? &stats->bounced : NULL;

    } else {
        rcpt->state = NGX_MAIL_PLUS_RCPT_DEFERRED;
        status = "deferred";
        counter = stats ? &stats->deferred : NULL;
    }

    if (counter) {
        (void) ngx_atomic_fetch_add(counter, 1);
    }

    ngx_log_error(NGX_LOG_INFO, msg->log, 0,
                  "delivery %s: to=<%V>, relay=%V, delay=%T, dsn=%V, "
                  "status=%s, reply=\"%V\"",
                  msg->id, &rcpt->addr,
                  rcpt->dest ? &rcpt->dest->name : &ngx_mail_plus_delivery_none,
                  ngx_time() - msg->arrival, &rcpt->dsn, status,
                  &rcpt->reply);
}


void
ngx_mail_plus_delivery_job_done(ngx_mail_plus_job_t *job)
{
    ngx_mail_plus_dmsg_t  *msg;

    msg = job->msg;

    if (--msg->jobs == 0) {
        ngx_mail_plus_delivery_finalize(msg);
    }
}


/*
 * every job of the attempt is done: recipients past the queue lifetime
 * fail, deliveries with NOTIFY=SUCCESS are reported, failures are
 * bounced, then the message is removed or deferred
 */

static void
ngx_mail_plus_delivery_finalize(ngx_mail_plus_dmsg_t *msg)
{
    ngx_int_t                       rc;
    ngx_str_t                       text;
    ngx_uint_t                      i, failed;
    ngx_mail_plus_rcpt_t           *rcpt;
    ngx_mail_plus_delivery_conf_t  *dcf;

    dcf = ngx_mail_plus_delivery->dcf;
    rcpt = msg->rcpts.elts;
    failed = 0;

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if ((rcpt[i].state == NGX_MAIL_PLUS_RCPT_DEFERRED
             || rcpt[i].state == NGX_MAIL_PLUS_RCPT_PENDING)
            && ngx_time() - msg->arrival >= dcf->lifetime)
        {
            if (rcpt[i].reply.len) {
                text.len = rcpt[i].reply.len + sizeof("5.4.7 delivery time "
                                                      "expired, last: ") - 1;
                text.data = ngx_pnalloc(msg->pool, text.len);

                if (text.data) {
                    text.len = ngx_sprintf(text.data, "5.4.7 delivery time "
                                           "expired, last: %V",
                                           &rcpt[i].reply)
                               - text.data;

                } else {
                    ngx_str_set(&text, "5.4.7 delivery time expired");
                }

            } else {
                ngx_str_set(&text, "5.4.7 delivery time expired");
            }

            rcpt[i].remote = 0;
            ngx_mail_plus_delivery_set(msg, &rcpt[i], 554, &text);
        }

        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_FAILED) {
            failed++;
        }
    }

    /* a success report is not retried: the recipients are done */

    if (msg->sender.len) {
        (void) ngx_mail_plus_bounce(dcf, msg, NGX_MAIL_PLUS_DSN_SUCCESS,
                                    ngx_mail_plus_delivery_reported, NULL);
    }

    /*
     * a failure of a message from <> (a bounce itself, or a notice): no
     * one to report to but the postmaster
     */

    if (failed && msg->sender.len == 0) {
        (void) ngx_mail_plus_bounce_double(dcf, msg);
    }

    if (failed && msg->sender.len) {

        rc = ngx_mail_plus_bounce(dcf, msg, NGX_MAIL_PLUS_DSN_FAILED,
                                  ngx_mail_plus_delivery_bounced, msg);

        if (rc == NGX_AGAIN) {
            return;
        }

        /* NGX_DECLINED: NOTIFY= asked for no report */

        if (rc == NGX_ERROR) {

            /* no bounce could be queued: the failures are tried again */

            ngx_mail_plus_delivery_record(msg, 0);
            return;
        }
    }

    ngx_mail_plus_delivery_record(msg, 1);
}


static void
ngx_mail_plus_delivery_bounced(ngx_mail_plus_queue_msg_t *m)
{
    ngx_mail_plus_delivery_record(m->data, m->err == 0);
}


/* removed when every recipient is done; else a new state, and deferred */

static void
ngx_mail_plus_delivery_record(ngx_mail_plus_dmsg_t *msg, ngx_uint_t bounced)
{
    u_char                         *p;
    size_t                          len;
    ngx_int_t                       rc;
    time_t                          delay;
    ngx_str_t                       state;
    ngx_uint_t                      i, left;
    ngx_mail_plus_rcpt_t           *rcpt;
    ngx_mail_plus_delivery_conf_t  *dcf;

    dcf = ngx_mail_plus_delivery ? ngx_mail_plus_delivery->dcf : NULL;

    msg->bounced = bounced;

    rcpt = msg->rcpts.elts;
    left = 0;
    len = ngx_mail_plus_spool_state_size(NULL);

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_FAILED && !bounced) {
            rcpt[i].state = NGX_MAIL_PLUS_RCPT_DEFERRED;
        }

        if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_DEFERRED
            || rcpt[i].state == NGX_MAIL_PLUS_RCPT_PENDING)
        {
            left++;

        } else {
            len += ngx_mail_plus_spool_state_size(&rcpt[i].addr);
        }
    }

    if (dcf == NULL) {
        (void) ngx_mail_plus_queue_release(msg->spool, msg->id, msg->log);
        ngx_mail_plus_delivery_free(msg);
        return;
    }

    if (left == 0) {

        /* the unlinks go to the thread pool */

        rc = ngx_mail_plus_queue_remove(msg->spool, msg->id,
                                        ngx_mail_plus_delivery_deferred, msg,
                                        msg->pool, msg->log);

        ngx_mail_plus_delivery_recorded(msg, rc);
        return;
    }

    /* a delay warning, once, to a sender that is not <> */

    if (dcf->delay_warning && !msg->warned && msg->sender.len
        && ngx_time() - msg->arrival >= dcf->delay_warning
        && ngx_mail_plus_bounce(dcf, msg, NGX_MAIL_PLUS_DSN_DELAYED,
                                ngx_mail_plus_delivery_reported, NULL)
           != NGX_ERROR)
    {
        msg->warned = 1;
    }

    state.data = ngx_pnalloc(msg->pool, len);

    if (state.data) {
        p = ngx_mail_plus_spool_state_write(state.data, msg->attempts + 1,
                                            msg->warned);

        for (i = 0; i < msg->rcpts.nelts; i++) {
            if (rcpt[i].state == NGX_MAIL_PLUS_RCPT_SENT
                || rcpt[i].state == NGX_MAIL_PLUS_RCPT_FAILED
                || rcpt[i].state == NGX_MAIL_PLUS_RCPT_DONE)
            {
                p = ngx_mail_plus_spool_state_done(p, &rcpt[i].addr);
            }
        }

        state.len = p - state.data;

    } else {
        state.len = 0;   /* the old state stays: a duplicate, not a loss */
    }

    delay = dcf->retry_first;

    for (i = 0; i < msg->attempts && delay < dcf->retry_max; i++) {
        delay *= 2;
    }

    if (delay > dcf->retry_max) {
        delay = dcf->retry_max;
    }

    ngx_mail_plus_delivery_defer(msg, ngx_time() + delay, &state);
}


/*
 * the state and the rename to deferred/ go to the thread pool; when it
 * cannot take them, they are tried again a little later
 */

static void
ngx_mail_plus_delivery_defer(ngx_mail_plus_dmsg_t *msg, time_t next,
    ngx_str_t *state)
{
    ngx_int_t  rc;

    rc = ngx_mail_plus_queue_defer(msg->spool, msg->id, state, next,
                                   ngx_mail_plus_delivery_deferred, msg,
                                   msg->pool, msg->log);

    ngx_mail_plus_delivery_recorded(msg, rc);
}


/*
 * a file that cannot be parsed goes to corrupt/ (in the thread pool); it
 * is not bounced: its sender cannot be trusted either
 */

static void
ngx_mail_plus_delivery_corrupt(ngx_mail_plus_dmsg_t *msg, char *reason)
{
    ngx_int_t  rc;

    if (msg->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(msg->fd);
        msg->fd = NGX_INVALID_FILE;
    }

    msg->reason = reason;

    rc = ngx_mail_plus_queue_corrupt(msg->spool, msg->id, reason,
                                     ngx_mail_plus_delivery_deferred, msg,
                                     msg->pool, msg->log);

    ngx_mail_plus_delivery_recorded(msg, rc);
}


/*
 * what a record of the attempt (removal, deferral, move to corrupt/) was
 * posted with: NGX_AGAIN, the thread calls back; NGX_BUSY, tried again
 * later; else the message is done with
 */

static void
ngx_mail_plus_delivery_recorded(ngx_mail_plus_dmsg_t *msg, ngx_int_t rc)
{
    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_BUSY) {
        msg->retry.handler = ngx_mail_plus_delivery_retry;
        ngx_add_timer(&msg->retry, NGX_MAIL_PLUS_DELIVERY_RETRY);
        return;
    }

    ngx_mail_plus_delivery_free(msg);
}


/*
 * the thread pool was busy: the record of the attempt (removal or
 * deferral), or the move to corrupt/, is tried again
 */

static void
ngx_mail_plus_delivery_retry(ngx_event_t *ev)
{
    ngx_mail_plus_dmsg_t  *msg;

    msg = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                   "delivery %s: spool operation retried", msg->id);

    if (msg->reason) {
        ngx_mail_plus_delivery_corrupt(msg, msg->reason);
        return;
    }

    if (msg->rcpts.nelts == 0) {

        /* the envelope was not read */

        ngx_mail_plus_delivery_loaded(msg);
        return;
    }

    ngx_mail_plus_delivery_record(msg, msg->bounced);
}


/* a removal, a deferral or a move to corrupt/ is done */

static void
ngx_mail_plus_delivery_deferred(void *data)
{
    ngx_mail_plus_delivery_free(data);
}


static void
ngx_mail_plus_delivery_reported(ngx_mail_plus_queue_msg_t *m)
{
    if (m->err) {
        ngx_log_error(NGX_LOG_ERR, m->log, m->err,
                      "delivery: notification %s not queued", m->id);
    }
}


static void
ngx_mail_plus_delivery_free(ngx_mail_plus_dmsg_t *msg)
{
    if (msg->retry.timer_set) {
        ngx_del_timer(&msg->retry);
    }

    if (msg->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(msg->fd);
    }

    ngx_queue_remove(&msg->queue);

    if (ngx_mail_plus_delivery) {
        ngx_mail_plus_delivery->nmsgs--;
    }

    ngx_destroy_pool(msg->pool);
}
