
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include <ngx_mail_smtp_module.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"
#include "ngx_mail_plus_smtp_session.h"


/*
 * SMTP store-and-forward: the directives.  A "protocol smtp" server with
 * "smtp_store_and_forward on" gets this module's protocol handlers in
 * place of the stock proxy's: the session ends in nginx and every message
 * goes to the spool.
 */


static void *ngx_mail_plus_smtp_create_main_conf(ngx_conf_t *cf);
static void *ngx_mail_plus_smtp_create_srv_conf(ngx_conf_t *cf);
static char *ngx_mail_plus_smtp_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_mail_plus_smtp_local_domains(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_mail_plus_smtp_trusted_networks(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_mail_plus_smtp_verify_cache_valid(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_conf_num_bounds_t  ngx_mail_plus_smtp_recipients_bounds = {
    ngx_conf_check_num_bounds, 1, 100000
};

static ngx_conf_num_bounds_t  ngx_mail_plus_smtp_errors_bounds = {
    ngx_conf_check_num_bounds, 1, 1000
};


static ngx_command_t  ngx_mail_plus_smtp_commands[] = {

    { ngx_string("smtp_store_and_forward"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, enable),
      NULL },

    { ngx_string("smtp_local_domains"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_mail_plus_smtp_local_domains,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("smtp_trusted_networks"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_mail_plus_smtp_trusted_networks,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("smtp_max_message_size"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, max_message_size),
      NULL },

    { ngx_string("smtp_max_recipients"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, max_recipients),
      &ngx_mail_plus_smtp_recipients_bounds },

    { ngx_string("smtp_max_line_length"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, max_line_length),
      NULL },

    { ngx_string("smtp_max_errors"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, max_errors),
      &ngx_mail_plus_smtp_errors_bounds },

    { ngx_string("smtp_command_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, command_timeout),
      NULL },

    { ngx_string("smtp_data_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, data_timeout),
      NULL },

    { ngx_string("smtp_data_min_rate"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, data_min_rate),
      NULL },

    { ngx_string("smtp_send_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, send_timeout),
      NULL },

    { ngx_string("smtp_auth_plaintext"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, auth_plaintext),
      NULL },

    { ngx_string("smtp_client_sessions"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, client_sessions),
      NULL },

    { ngx_string("smtp_verify_recipients"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, verify_recipients),
      NULL },

    { ngx_string("smtp_verify_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_smtp_srv_conf_t, verify.timeout),
      NULL },

    { ngx_string("smtp_verify_cache_valid"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE2,
      ngx_mail_plus_smtp_verify_cache_valid,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_mail_module_t  ngx_mail_plus_smtp_module_ctx = {
    NULL,                                  /* protocol */

    ngx_mail_plus_smtp_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_mail_plus_smtp_create_srv_conf,    /* create server configuration */
    ngx_mail_plus_smtp_merge_srv_conf      /* merge server configuration */
};


ngx_module_t  ngx_mail_plus_smtp_module = {
    NGX_MODULE_V1,
    &ngx_mail_plus_smtp_module_ctx,        /* module context */
    ngx_mail_plus_smtp_commands,           /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the stock smtp protocol with this module's session */

static ngx_mail_protocol_t  ngx_mail_plus_smtp_protocol = {
    ngx_string("smtp"),
    ngx_string("\x04smtp"),
    { 25, 465, 587, 0 },
    NGX_MAIL_SMTP_PROTOCOL,

    ngx_mail_plus_smtp_init_session,
    ngx_mail_plus_smtp_init_protocol,
    ngx_mail_smtp_parse_command,
    ngx_mail_plus_smtp_auth_state,

    ngx_string("451 4.3.2 Internal server error" CRLF),
    ngx_string("421 4.7.1 SSL certificate error" CRLF),
    ngx_string("421 4.7.1 No required SSL certificate" CRLF)
};


static void *
ngx_mail_plus_smtp_create_main_conf(ngx_conf_t *cf)
{
    ngx_mail_plus_smtp_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_smtp_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->queue = NULL;
     */

    return smcf;
}


static void *
ngx_mail_plus_smtp_create_srv_conf(ngx_conf_t *cf)
{
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    sscf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_smtp_srv_conf_t));
    if (sscf == NULL) {
        return NULL;
    }

    sscf->local_domains = NGX_CONF_UNSET_PTR;
    sscf->trusted = NGX_CONF_UNSET_PTR;
    sscf->enable = NGX_CONF_UNSET;
    sscf->max_message_size = NGX_CONF_UNSET;
    sscf->max_recipients = NGX_CONF_UNSET_UINT;
    sscf->max_line_length = NGX_CONF_UNSET_SIZE;
    sscf->max_errors = NGX_CONF_UNSET_UINT;
    sscf->command_timeout = NGX_CONF_UNSET_MSEC;
    sscf->data_timeout = NGX_CONF_UNSET_MSEC;
    sscf->data_min_rate = NGX_CONF_UNSET_SIZE;
    sscf->send_timeout = NGX_CONF_UNSET_MSEC;
    sscf->auth_plaintext = NGX_CONF_UNSET;
    sscf->client_sessions = NGX_CONF_UNSET_UINT;
    sscf->verify_recipients = NGX_CONF_UNSET;
    sscf->verify.timeout = NGX_CONF_UNSET_MSEC;
    sscf->verify.valid = NGX_CONF_UNSET;
    sscf->verify.invalid = NGX_CONF_UNSET;

    return sscf;
}


static char *
ngx_mail_plus_smtp_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_mail_plus_smtp_srv_conf_t *prev = parent;
    ngx_mail_plus_smtp_srv_conf_t *conf = child;

    ngx_flag_t                       explicit;
    ngx_mail_plus_srv_conf_t        *pscf;
    ngx_mail_core_srv_conf_t        *cscf;
    ngx_mail_plus_smtp_main_conf_t  *smcf;

    explicit = (conf->enable != NGX_CONF_UNSET);

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_ptr_value(conf->local_domains, prev->local_domains, NULL);
    ngx_conf_merge_ptr_value(conf->trusted, prev->trusted, NULL);
    ngx_conf_merge_off_value(conf->max_message_size, prev->max_message_size,
                             10 * 1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_recipients, prev->max_recipients, 100);
    /* a token's AUTH line may be long: RFC 4954's limit for it then */

    pscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_plus_module);

    ngx_conf_merge_size_value(conf->max_line_length, prev->max_line_length,
                              pscf->token_mechs ? 12288 : 2048);
    ngx_conf_merge_uint_value(conf->max_errors, prev->max_errors, 10);
    ngx_conf_merge_msec_value(conf->command_timeout, prev->command_timeout,
                              300000);
    ngx_conf_merge_msec_value(conf->data_timeout, prev->data_timeout, 300000);
    ngx_conf_merge_size_value(conf->data_min_rate, prev->data_min_rate, 500);
    ngx_conf_merge_msec_value(conf->send_timeout, prev->send_timeout, 60000);
    ngx_conf_merge_value(conf->auth_plaintext, prev->auth_plaintext, 0);
    ngx_conf_merge_uint_value(conf->client_sessions, prev->client_sessions,
                              50);
    ngx_conf_merge_value(conf->verify_recipients, prev->verify_recipients, 1);
    ngx_conf_merge_msec_value(conf->verify.timeout, prev->verify.timeout,
                              10000);

    if (conf->verify.valid == NGX_CONF_UNSET) {
        conf->verify.valid = (prev->verify.valid == NGX_CONF_UNSET)
                             ? 600 : prev->verify.valid;
        conf->verify.invalid = (prev->verify.invalid == NGX_CONF_UNSET)
                               ? 60 : prev->verify.invalid;
    }

    if (conf->max_line_length < 512) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"smtp_max_line_length\" must be at least 512");
        return NGX_CONF_ERROR;
    }

    if (conf->max_message_size <= 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"smtp_max_message_size\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    cscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_core_module);

    /* the main "mail" level has no protocol: only servers are switched */

    if (cscf->protocol == NULL) {
        return NGX_CONF_OK;
    }

    if (cscf->protocol->type != NGX_MAIL_SMTP_PROTOCOL) {

        /* set in "mail": it applies to the smtp servers only */

        if (!explicit) {
            return NGX_CONF_OK;
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"smtp_store_and_forward\" needs \"protocol smtp\" "
                      "in the server in %s:%ui",
                      cscf->file_name, cscf->line);
        return NGX_CONF_ERROR;
    }

    cscf->protocol = &ngx_mail_plus_smtp_protocol;

    smcf = ngx_mail_conf_get_module_main_conf(cf, ngx_mail_plus_smtp_module);

    smcf->queue = ngx_mail_plus_queue_use(cf);

    if (smcf->queue == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_mail_plus_smtp_local_domains(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_plus_smtp_srv_conf_t *sscf = conf;

    ngx_str_t   *value, *d;
    ngx_uint_t   i;

    if (sscf->local_domains != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    sscf->local_domains = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                           sizeof(ngx_str_t));
    if (sscf->local_domains == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0 || value[i].data[0] == '@') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid domain \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        d = ngx_array_push(sscf->local_domains);
        if (d == NULL) {
            return NGX_CONF_ERROR;
        }

        *d = value[i];
        ngx_strlow(d->data, d->data, d->len);
    }

    return NGX_CONF_OK;
}


static char *
ngx_mail_plus_smtp_trusted_networks(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_plus_smtp_srv_conf_t *sscf = conf;

    if (sscf->trusted != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    return ngx_mail_plus_conf_networks(cf, &sscf->trusted);
}


/* smtp_verify_cache_valid 10m 1m: answers "exists" and "does not exist" */

static char *
ngx_mail_plus_smtp_verify_cache_valid(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_plus_smtp_srv_conf_t *sscf = conf;

    time_t      valid, invalid;
    ngx_str_t  *value;

    if (sscf->verify.valid != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    valid = ngx_parse_time(&value[1], 1);
    invalid = ngx_parse_time(&value[2], 1);

    if (valid == (time_t) NGX_ERROR || invalid == (time_t) NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid times \"%V %V\"", &value[1], &value[2]);
        return NGX_CONF_ERROR;
    }

    sscf->verify.valid = valid;
    sscf->verify.invalid = invalid;

    return NGX_CONF_OK;
}
