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
param retentionSweepSchedule string
param jobRetentionEnabled bool
@minValue(1)
@maxValue(3650)
param stateRetentionDays int
@minValue(30)
param jobRetentionDays int
param telemetryPurgeEnabled bool
param exportLinkDays int
param maxDeliveryCount int
@secure()
@description('Salt of the subject hashes in logs (DSR_LOG_SALT).')
param logSalt string
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

var appSettingsSpec = loadJsonContent('../app-settings.json')
// The parameters app-settings.json may name ('param'), by name.
var paramValues = {
  hostStorageName: hostStorageName
  identityClientId: identityClientId
  serviceBusFqdn: serviceBusFqdn
  appInsightsConnectionString: appInsightsConnectionString
  appInsightsAuthenticationString: 'ClientId=${identityClientId};Authorization=AAD'
  logSalt: logSalt
  stateBlobEndpoint: stateBlobEndpoint
  retentionSweepSchedule: retentionSweepSchedule
  jobRetentionEnabled: jobRetentionEnabled
  stateRetentionDays: stateRetentionDays
  jobRetentionDays: jobRetentionDays
  telemetryPurgeEnabled: telemetryPurgeEnabled
  exportLinkDays: exportLinkDays
  maxDeliveryCount: maxDeliveryCount
}

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
      // Every setting comes from ../app-settings.json (the tests read the same file).
      appSettings: [for s in appSettingsSpec.settings: {
        name: s.name
        value: contains(s, 'param') ? string(paramValues[s.param]) : s.value
      }]
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
