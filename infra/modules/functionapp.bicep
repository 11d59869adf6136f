// Function app on the Flex Consumption plan (FC1, Linux), custom handler runtime.
// Every connection is identity-based through the user-assigned identity; no app setting
// holds a key, a SAS or a connection string with a secret.
param planName string
param appName string
param location string
param tags object
param identityId string
param identityClientId string
param hostStorageName string
param hostBlobEndpoint string
param deploymentContainerName string
param serviceBusFqdn string
param stateBlobEndpoint string
param appInsightsConnectionString string
param workspaceIds array
param retentionSweepSchedule string
param retentionDays int
param telemetryPurgeEnabled bool
param exportLinkDays int
param maxDeliveryCount int
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // Linux
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  // azd finds the deploy target through this tag (service "api" in azure.yaml).
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        // Custom handler: the host starts host.json customHandler.description.defaultExecutablePath.
        name: 'custom'
        version: '1.0'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Host storage, identity-based (Flex: FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION
        // must NOT be set; the runtime comes from functionAppConfig.runtime).
        {
          name: 'AzureWebJobsStorage__accountName'
          value: hostStorageName
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // Service Bus, identity-based (function.json "connection": "ServiceBusConnection").
        {
          name: 'ServiceBusConnection__fullyQualifiedNamespace'
          value: serviceBusFqdn
        }
        {
          name: 'ServiceBusConnection__credential'
          value: 'managedidentity'
        }
        {
          name: 'ServiceBusConnection__clientId'
          value: identityClientId
        }
        // Application Insights: the connection string only names the target; ingestion is
        // authenticated with the identity (Entra) because the component has DisableLocalAuth.
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        // The handler's own Azure SDK clients pick the user-assigned identity from this.
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'DSR_MODE'
          value: 'azure'
        }
        {
          name: 'DSR_STATE_ACCOUNT_URL'
          value: stateBlobEndpoint
        }
        {
          name: 'DSR_SERVICEBUS_NAMESPACE'
          value: serviceBusFqdn
        }
        {
          name: 'DSR_WORKSPACES'
          value: string(workspaceIds)
        }
        {
          name: 'RETENTION_SWEEP_SCHEDULE'
          value: retentionSweepSchedule
        }
        {
          name: 'DSR_RETENTION_DAYS'
          value: string(retentionDays)
        }
        {
          name: 'DSR_TELEMETRY_PURGE_ENABLED'
          value: string(telemetryPurgeEnabled)
        }
        {
          name: 'DSR_EXPORT_LINK_DAYS'
          value: string(exportLinkDays)
        }
        {
          name: 'DSR_MAX_DELIVERY_COUNT'
          value: string(maxDeliveryCount)
        }
      ]
    }
  }
}

// No FTP and no basic-auth (publishing profile) deployments: deploy only with Entra tokens.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = app.id
output name string = app.name
output defaultHostName string = app.properties.defaultHostName
